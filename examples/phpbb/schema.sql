-- phpBB 3.3's own tables for users and groups on PostgreSQL, exactly as its installer
-- creates them, with the rows a fresh install holds.
--
-- Source: github phpbb/phpbb, branch 3.3.x at d46228d8 (3.3.17-dev). phpBB 3.1+ keeps no
-- table DDL in SQL files: the installer (phpbb/install/module/install_database/task/
-- create_schema.php) builds it from the migrations. The CREATE statements below are the
-- output of that same code, phpbb/db/migration/schema_generator.php over every class in
-- phpbb/db/migration/data/ followed by phpbb/db/tools/postgres.php sql_create_table(), run
-- unchanged with PHP 8.2; the varchar_ci domain and its operators are
-- phpBB/install/schemas/postgres_schema.sql verbatim; the rows are
-- phpBB/install/schemas/schema_data.sql verbatim (the users, groups, teampage, user_group,
-- acl_groups rows and the config rows the user code reads), plus three of the bots the
-- installer adds (phpbb/install/module/install_data/task/add_bots.php, via user_add()).
-- A subset of phpBB's tables: every column of each table included, none changed. phpBB
-- 3.3 has no user_email_hash any more (v330/remove_email_hash.php): user_email is indexed.
--
-- What phpBB's PHP keeps that no constraint says: user_type 0 normal, 1 inactive, 2 ignored
-- (the anonymous user, id 1, and bots), 3 founder; group_id is the user's default group and
-- the user is also in it in phpbb_user_group; group_type 3 marks the built-in ("special")
-- groups; user_permissions caches the user's permissions, to be emptied when its groups
-- change (auth::acl_clear_prefetch()); user_pending 0 is a confirmed membership.

-- === phpBB/install/schemas/postgres_schema.sql ===

/*
	Domain definition
*/
CREATE DOMAIN varchar_ci AS varchar(255) NOT NULL DEFAULT ''::character varying;

/*
	Operation Functions
*/
CREATE FUNCTION _varchar_ci_equal(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) = LOWER($2)' LANGUAGE SQL STRICT;
CREATE FUNCTION _varchar_ci_not_equal(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) != LOWER($2)' LANGUAGE SQL STRICT;
CREATE FUNCTION _varchar_ci_less_than(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) < LOWER($2)' LANGUAGE SQL STRICT;
CREATE FUNCTION _varchar_ci_less_equal(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) <= LOWER($2)' LANGUAGE SQL STRICT;
CREATE FUNCTION _varchar_ci_greater_than(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) > LOWER($2)' LANGUAGE SQL STRICT;
CREATE FUNCTION _varchar_ci_greater_equals(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) >= LOWER($2)' LANGUAGE SQL STRICT;

/*
	Operators
*/
CREATE OPERATOR <(
  PROCEDURE = _varchar_ci_less_than,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = >,
  NEGATOR = >=,
  RESTRICT = scalarltsel,
  JOIN = scalarltjoinsel);

CREATE OPERATOR <=(
  PROCEDURE = _varchar_ci_less_equal,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = >=,
  NEGATOR = >,
  RESTRICT = scalarltsel,
  JOIN = scalarltjoinsel);

CREATE OPERATOR >(
  PROCEDURE = _varchar_ci_greater_than,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = <,
  NEGATOR = <=,
  RESTRICT = scalargtsel,
  JOIN = scalargtjoinsel);

CREATE OPERATOR >=(
  PROCEDURE = _varchar_ci_greater_equals,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = <=,
  NEGATOR = <,
  RESTRICT = scalargtsel,
  JOIN = scalargtjoinsel);

CREATE OPERATOR <>(
  PROCEDURE = _varchar_ci_not_equal,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = <>,
  NEGATOR = =,
  RESTRICT = neqsel,
  JOIN = neqjoinsel);

CREATE OPERATOR =(
  PROCEDURE = _varchar_ci_equal,
  LEFTARG = varchar_ci,
  RIGHTARG = varchar_ci,
  COMMUTATOR = =,
  NEGATOR = <>,
  RESTRICT = eqsel,
  JOIN = eqjoinsel,
  HASHES,
  MERGES,
  SORT1= <);

-- === The tables (schema_generator + tools/postgres) ===

CREATE SEQUENCE phpbb_users_seq;
CREATE TABLE phpbb_users (
  user_id INT4 DEFAULT nextval('phpbb_users_seq') CHECK (user_id >= 0),
  user_type INT2 NOT NULL DEFAULT '0',
  group_id INT4 NOT NULL DEFAULT '3' CHECK (group_id >= 0),
  user_permissions TEXT NOT NULL DEFAULT '',
  user_perm_from INT4 NOT NULL DEFAULT '0' CHECK (user_perm_from >= 0),
  user_ip varchar(40) NOT NULL DEFAULT '',
  user_regdate INT4 NOT NULL DEFAULT '0' CHECK (user_regdate >= 0),
  username varchar_ci NOT NULL DEFAULT '',
  username_clean varchar_ci NOT NULL DEFAULT '',
  user_password varchar(255) NOT NULL DEFAULT '',
  user_passchg INT4 NOT NULL DEFAULT '0' CHECK (user_passchg >= 0),
  user_email varchar(100) NOT NULL DEFAULT '',
  user_birthday varchar(10) NOT NULL DEFAULT '',
  user_lastvisit INT4 NOT NULL DEFAULT '0' CHECK (user_lastvisit >= 0),
  user_last_active INT4 NOT NULL DEFAULT '0' CHECK (user_last_active >= 0),
  user_lastmark INT4 NOT NULL DEFAULT '0' CHECK (user_lastmark >= 0),
  user_lastpost_time INT4 NOT NULL DEFAULT '0' CHECK (user_lastpost_time >= 0),
  user_lastpage varchar(200) NOT NULL DEFAULT '',
  user_last_confirm_key varchar(10) NOT NULL DEFAULT '',
  user_last_search INT4 NOT NULL DEFAULT '0' CHECK (user_last_search >= 0),
  user_warnings INT2 NOT NULL DEFAULT '0',
  user_last_warning INT4 NOT NULL DEFAULT '0' CHECK (user_last_warning >= 0),
  user_login_attempts INT2 NOT NULL DEFAULT '0',
  user_inactive_reason INT2 NOT NULL DEFAULT '0',
  user_inactive_time INT4 NOT NULL DEFAULT '0' CHECK (user_inactive_time >= 0),
  user_posts INT4 NOT NULL DEFAULT '0' CHECK (user_posts >= 0),
  user_lang varchar(30) NOT NULL DEFAULT '',
  user_timezone varchar(100) NOT NULL DEFAULT '',
  user_dateformat varchar(64) NOT NULL DEFAULT 'd M Y H:i',
  user_style INT4 NOT NULL DEFAULT '0' CHECK (user_style >= 0),
  user_rank INT4 NOT NULL DEFAULT '0' CHECK (user_rank >= 0),
  user_colour varchar(6) NOT NULL DEFAULT '',
  user_new_privmsg INT4 NOT NULL DEFAULT '0',
  user_unread_privmsg INT4 NOT NULL DEFAULT '0',
  user_last_privmsg INT4 NOT NULL DEFAULT '0' CHECK (user_last_privmsg >= 0),
  user_message_rules INT2 NOT NULL DEFAULT '0' CHECK (user_message_rules >= 0),
  user_full_folder INT4 NOT NULL DEFAULT '-3',
  user_emailtime INT4 NOT NULL DEFAULT '0' CHECK (user_emailtime >= 0),
  user_topic_show_days INT2 NOT NULL DEFAULT '0' CHECK (user_topic_show_days >= 0),
  user_topic_sortby_type varchar(1) NOT NULL DEFAULT 't',
  user_topic_sortby_dir varchar(1) NOT NULL DEFAULT 'd',
  user_post_show_days INT2 NOT NULL DEFAULT '0' CHECK (user_post_show_days >= 0),
  user_post_sortby_type varchar(1) NOT NULL DEFAULT 't',
  user_post_sortby_dir varchar(1) NOT NULL DEFAULT 'a',
  user_notify INT2 NOT NULL DEFAULT '0' CHECK (user_notify >= 0),
  user_notify_pm INT2 NOT NULL DEFAULT '1' CHECK (user_notify_pm >= 0),
  user_notify_type INT2 NOT NULL DEFAULT '0',
  user_allow_pm INT2 NOT NULL DEFAULT '1' CHECK (user_allow_pm >= 0),
  user_allow_viewonline INT2 NOT NULL DEFAULT '1' CHECK (user_allow_viewonline >= 0),
  user_allow_viewemail INT2 NOT NULL DEFAULT '1' CHECK (user_allow_viewemail >= 0),
  user_allow_massemail INT2 NOT NULL DEFAULT '1' CHECK (user_allow_massemail >= 0),
  user_options INT4 NOT NULL DEFAULT '230271' CHECK (user_options >= 0),
  user_avatar varchar(255) NOT NULL DEFAULT '',
  user_avatar_type varchar(255) NOT NULL DEFAULT '',
  user_avatar_width INT2 NOT NULL DEFAULT '0' CHECK (user_avatar_width >= 0),
  user_avatar_height INT2 NOT NULL DEFAULT '0' CHECK (user_avatar_height >= 0),
  user_sig TEXT NOT NULL DEFAULT '',
  user_sig_bbcode_uid varchar(8) NOT NULL DEFAULT '',
  user_sig_bbcode_bitfield varchar(255) NOT NULL DEFAULT '',
  user_jabber varchar(255) NOT NULL DEFAULT '',
  user_actkey varchar(32) NOT NULL DEFAULT '',
  user_actkey_expiration INT4 NOT NULL DEFAULT '0' CHECK (user_actkey_expiration >= 0),
  reset_token varchar(64) NOT NULL DEFAULT '',
  reset_token_expiration INT4 NOT NULL DEFAULT '0' CHECK (reset_token_expiration >= 0),
  user_newpasswd varchar(255) NOT NULL DEFAULT '',
  user_form_salt varchar(32) NOT NULL DEFAULT '',
  user_new INT2 NOT NULL DEFAULT '1' CHECK (user_new >= 0),
  user_reminded INT2 NOT NULL DEFAULT '0',
  user_reminded_time INT4 NOT NULL DEFAULT '0' CHECK (user_reminded_time >= 0),
  PRIMARY KEY (user_id)
);
CREATE INDEX phpbb_users_user_birthday ON phpbb_users(user_birthday);
CREATE INDEX phpbb_users_user_type ON phpbb_users(user_type);
CREATE UNIQUE INDEX phpbb_users_username_clean ON phpbb_users(username_clean);
CREATE INDEX phpbb_users_user_email ON phpbb_users(user_email);

CREATE SEQUENCE phpbb_groups_seq;
CREATE TABLE phpbb_groups (
  group_id INT4 DEFAULT nextval('phpbb_groups_seq') CHECK (group_id >= 0),
  group_type INT2 NOT NULL DEFAULT '1',
  group_founder_manage INT2 NOT NULL DEFAULT '0' CHECK (group_founder_manage >= 0),
  group_skip_auth INT2 NOT NULL DEFAULT '0' CHECK (group_skip_auth >= 0),
  group_name varchar_ci NOT NULL DEFAULT '',
  group_desc varchar(4000) NOT NULL DEFAULT '',
  group_desc_bitfield varchar(255) NOT NULL DEFAULT '',
  group_desc_options INT4 NOT NULL DEFAULT '7' CHECK (group_desc_options >= 0),
  group_desc_uid varchar(8) NOT NULL DEFAULT '',
  group_display INT2 NOT NULL DEFAULT '0' CHECK (group_display >= 0),
  group_avatar varchar(255) NOT NULL DEFAULT '',
  group_avatar_type varchar(255) NOT NULL DEFAULT '',
  group_avatar_width INT2 NOT NULL DEFAULT '0' CHECK (group_avatar_width >= 0),
  group_avatar_height INT2 NOT NULL DEFAULT '0' CHECK (group_avatar_height >= 0),
  group_rank INT4 NOT NULL DEFAULT '0' CHECK (group_rank >= 0),
  group_colour varchar(6) NOT NULL DEFAULT '',
  group_sig_chars INT4 NOT NULL DEFAULT '0' CHECK (group_sig_chars >= 0),
  group_receive_pm INT2 NOT NULL DEFAULT '0' CHECK (group_receive_pm >= 0),
  group_message_limit INT4 NOT NULL DEFAULT '0' CHECK (group_message_limit >= 0),
  group_legend INT4 NOT NULL DEFAULT '0' CHECK (group_legend >= 0),
  group_max_recipients INT4 NOT NULL DEFAULT '0' CHECK (group_max_recipients >= 0),
  PRIMARY KEY (group_id)
);
CREATE INDEX phpbb_groups_group_legend_name ON phpbb_groups(group_legend, group_name);

CREATE TABLE phpbb_user_group (
  group_id INT4 NOT NULL DEFAULT '0' CHECK (group_id >= 0),
  user_id INT4 NOT NULL DEFAULT '0' CHECK (user_id >= 0),
  group_leader INT2 NOT NULL DEFAULT '0' CHECK (group_leader >= 0),
  user_pending INT2 NOT NULL DEFAULT '1' CHECK (user_pending >= 0)
);
CREATE INDEX phpbb_user_group_group_id ON phpbb_user_group(group_id);
CREATE INDEX phpbb_user_group_user_id ON phpbb_user_group(user_id);
CREATE INDEX phpbb_user_group_group_leader ON phpbb_user_group(group_leader);

CREATE SEQUENCE phpbb_bots_seq;
CREATE TABLE phpbb_bots (
  bot_id INT4 DEFAULT nextval('phpbb_bots_seq') CHECK (bot_id >= 0),
  bot_active INT2 NOT NULL DEFAULT '1' CHECK (bot_active >= 0),
  bot_name varchar(255) NOT NULL DEFAULT '',
  user_id INT4 NOT NULL DEFAULT '0' CHECK (user_id >= 0),
  bot_agent varchar(255) NOT NULL DEFAULT '',
  bot_ip varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (bot_id)
);
CREATE INDEX phpbb_bots_bot_active ON phpbb_bots(bot_active);

CREATE TABLE phpbb_acl_groups (
  group_id INT4 NOT NULL DEFAULT '0' CHECK (group_id >= 0),
  forum_id INT4 NOT NULL DEFAULT '0' CHECK (forum_id >= 0),
  auth_option_id INT4 NOT NULL DEFAULT '0' CHECK (auth_option_id >= 0),
  auth_role_id INT4 NOT NULL DEFAULT '0' CHECK (auth_role_id >= 0),
  auth_setting INT2 NOT NULL DEFAULT '0'
);
CREATE INDEX phpbb_acl_groups_group_id ON phpbb_acl_groups(group_id);
CREATE INDEX phpbb_acl_groups_auth_opt_id ON phpbb_acl_groups(auth_option_id);
CREATE INDEX phpbb_acl_groups_auth_role_id ON phpbb_acl_groups(auth_role_id);

CREATE SEQUENCE phpbb_teampage_seq;
CREATE TABLE phpbb_teampage (
  teampage_id INT4 DEFAULT nextval('phpbb_teampage_seq') CHECK (teampage_id >= 0),
  group_id INT4 NOT NULL DEFAULT '0' CHECK (group_id >= 0),
  teampage_name varchar(255) NOT NULL DEFAULT '',
  teampage_position INT4 NOT NULL DEFAULT '0' CHECK (teampage_position >= 0),
  teampage_parent INT4 NOT NULL DEFAULT '0' CHECK (teampage_parent >= 0),
  PRIMARY KEY (teampage_id)
);

CREATE TABLE phpbb_config (
  config_name varchar(255) NOT NULL DEFAULT '',
  config_value varchar(255) NOT NULL DEFAULT '',
  is_dynamic INT2 NOT NULL DEFAULT '0' CHECK (is_dynamic >= 0),
  PRIMARY KEY (config_name)
);
CREATE INDEX phpbb_config_is_dynamic ON phpbb_config(is_dynamic);

-- === phpBB/install/schemas/schema_data.sql ===

INSERT INTO phpbb_config (config_name, config_value) VALUES ('board_timezone', 'UTC');
INSERT INTO phpbb_config (config_name, config_value) VALUES ('default_dateformat', 'D M d, Y g:i a');
INSERT INTO phpbb_config (config_name, config_value) VALUES ('default_style', '1');
INSERT INTO phpbb_config (config_name, config_value) VALUES ('new_member_group_default', '0');
INSERT INTO phpbb_config (config_name, config_value) VALUES ('new_member_post_limit', '3');
INSERT INTO phpbb_config (config_name, config_value, is_dynamic) VALUES ('newest_user_colour', 'AA0000', 1);
INSERT INTO phpbb_config (config_name, config_value, is_dynamic) VALUES ('newest_user_id', '2', 1);
INSERT INTO phpbb_config (config_name, config_value, is_dynamic) VALUES ('newest_username', '', 1);
INSERT INTO phpbb_config (config_name, config_value, is_dynamic) VALUES ('num_users', '1', 1);

INSERT INTO phpbb_users (user_type, group_id, username, username_clean, user_regdate, user_password, user_email, user_lang, user_style, user_rank, user_colour, user_posts, user_permissions, user_ip, user_birthday, user_lastpage, user_last_confirm_key, user_post_sortby_type, user_post_sortby_dir, user_topic_sortby_type, user_topic_sortby_dir, user_avatar, user_sig, user_sig_bbcode_uid, user_jabber, user_actkey, user_actkey_expiration, user_newpasswd, user_allow_massemail) VALUES (2, 1, 'Anonymous', 'anonymous', 0, '', '', 'en', 1, 0, '', 0, '', '', '', '', '', 't', 'a', 't', 'd', '', '', '', '', '', 0, '', 0);
INSERT INTO phpbb_users (user_type, group_id, username, username_clean, user_regdate, user_password, user_email, user_lang, user_style, user_rank, user_colour, user_posts, user_permissions, user_ip, user_birthday, user_lastpage, user_last_confirm_key, user_post_sortby_type, user_post_sortby_dir, user_topic_sortby_type, user_topic_sortby_dir, user_avatar, user_sig, user_sig_bbcode_uid, user_jabber, user_actkey, user_actkey_expiration, user_newpasswd) VALUES (3, 5, 'Admin', 'admin', 0, '21232f297a57a5a743894a0e4a801fc3', 'admin@yourdomain.com', 'en', 1, 1, 'AA0000', 1, '', '', '', '', '', 't', 'a', 't', 'd', '', '', '', '', '', 0, '');

INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('GUESTS', 3, 0, '', 0, '', '', '', 5);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('REGISTERED', 3, 0, '', 0, '', '', '', 5);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('REGISTERED_COPPA', 3, 0, '', 0, '', '', '', 5);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('GLOBAL_MODERATORS', 3, 0, '00AA00', 2, '', '', '', 0);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('ADMINISTRATORS', 3, 1, 'AA0000', 1, '', '', '', 0);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('BOTS', 3, 0, '9E8DA7', 0, '', '', '', 5);
INSERT INTO phpbb_groups (group_name, group_type, group_founder_manage, group_colour, group_legend, group_avatar, group_desc, group_desc_uid, group_max_recipients) VALUES ('NEWLY_REGISTERED', 3, 0, '', 0, '', '', '', 5);

INSERT INTO phpbb_teampage (group_id, teampage_name, teampage_position, teampage_parent) VALUES (5, '', 1, 0);
INSERT INTO phpbb_teampage (group_id, teampage_name, teampage_position, teampage_parent) VALUES (4, '', 2, 0);

INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (1, 1, 0, 0);
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (2, 2, 0, 0);
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (4, 2, 0, 0);
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (5, 2, 0, 1);

INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (5, 0, 0, 5, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (5, 0, 0, 1, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (2, 0, 0, 6, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (3, 0, 0, 6, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (4, 0, 0, 5, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (4, 0, 0, 10, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (1, 1, 0, 17, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (2, 1, 0, 17, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (3, 1, 0, 17, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (6, 1, 0, 17, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (1, 2, 0, 17, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (2, 2, 0, 15, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (3, 2, 0, 15, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (4, 2, 0, 21, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (5, 2, 0, 14, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (5, 2, 0, 10, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (6, 2, 0, 19, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (7, 0, 0, 23, 0);
INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES (7, 2, 0, 24, 0);

-- === Bots, as the installer's add_bots task adds them (user_add(), then phpbb_bots) ===
-- (three of its list of 50; user_form_salt is random in phpBB, fixed here)

INSERT INTO phpbb_users (user_type, group_id, username, username_clean, user_regdate, user_password, user_colour, user_email, user_lang, user_style, user_timezone, user_dateformat, user_allow_massemail, user_allow_pm, user_permissions, user_passchg, user_options, user_new, user_lastmark, user_form_salt) VALUES (2, 6, 'AdsBot [Google]', 'adsbot [google]', 1705311000, '', '9E8DA7', '', 'en', 1, 'UTC', 'D M d, Y g:i a', 0, 0, '', 1705311000, 230271, 0, 1705311000, '3a1d9c0e5b7f2468');
INSERT INTO phpbb_users (user_type, group_id, username, username_clean, user_regdate, user_password, user_colour, user_email, user_lang, user_style, user_timezone, user_dateformat, user_allow_massemail, user_allow_pm, user_permissions, user_passchg, user_options, user_new, user_lastmark, user_form_salt) VALUES (2, 6, 'Bing [Bot]', 'bing [bot]', 1705311000, '', '9E8DA7', '', 'en', 1, 'UTC', 'D M d, Y g:i a', 0, 0, '', 1705311000, 230271, 0, 1705311000, '5c2e8a1f9d3b7046');
INSERT INTO phpbb_users (user_type, group_id, username, username_clean, user_regdate, user_password, user_colour, user_email, user_lang, user_style, user_timezone, user_dateformat, user_allow_massemail, user_allow_pm, user_permissions, user_passchg, user_options, user_new, user_lastmark, user_form_salt) VALUES (2, 6, 'Google [Bot]', 'google [bot]', 1705311000, '', '9E8DA7', '', 'en', 1, 'UTC', 'D M d, Y g:i a', 0, 0, '', 1705311000, 230271, 0, 1705311000, '7e4f0b2d6a8c1935');
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (6, 3, 0, 0);
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (6, 4, 0, 0);
INSERT INTO phpbb_user_group (group_id, user_id, user_pending, group_leader) VALUES (6, 5, 0, 0);
INSERT INTO phpbb_bots (bot_active, bot_name, user_id, bot_agent, bot_ip) VALUES (1, 'AdsBot [Google]', 3, 'AdsBot-Google', '');
INSERT INTO phpbb_bots (bot_active, bot_name, user_id, bot_agent, bot_ip) VALUES (1, 'Bing [Bot]', 4, 'bingbot/', '');
INSERT INTO phpbb_bots (bot_active, bot_name, user_id, bot_agent, bot_ip) VALUES (1, 'Google [Bot]', 5, 'Googlebot', '');
