-- Redmine's own tables on PostgreSQL, as `bin/rails db:migrate` leaves them: users and groups
-- (one `users` table, told apart by `type`), e-mail addresses, group membership, and the
-- project memberships Redmine derives from it; plus the tables a deleted principal's rows
-- must leave, and user custom fields (where Redmine keeps attributes it has no column for).
--
-- Redmine defines its schema in Rails migrations (github redmine/redmine, master at 890812e,
-- db/migrate/*.rb), not in SQL. This file is the DDL those migrations produce with Rails'
-- PostgreSQL adapter, column for column and in column order: `create_table` under
-- Migration[4.2] gives `id serial PRIMARY KEY`, `:string` gives `varchar` (with its :limit),
-- `:datetime`/`:timestamp` give `timestamp`, `add_index` names indexes
-- index_<table>_on_<columns>. The migrations behind each table:
--
--   users            001_setup, 044_set_language_length_to_five, 080_add_users_type,
--                    20091017214336_add_missing_indexes_to_users,
--                    20100129193402_change_users_mail_notification_to_string,
--                    20110223180944_add_users_salt, 20110401192910_add_index_to_users_type,
--                    20120205111326_change_users_login_limit,
--                    20130215073721_change_users_lastname_length_to_255,
--                    20130729070143_add_users_must_change_passwd,
--                    20140903143914_add_password_changed_at_to_user,
--                    20150113213922_remove_users_mail (mail moved to email_addresses),
--                    20200826153401_add_twofa_scheme_to_user, 20200826153402_add_totp_to_user,
--                    20210704125704_add_twofa_required_to_groups,
--                    108_add_identity_url_to_users + 20211213122100_remove_identity_url_from_users,
--                    20260319062845_add_index_to_users_lower_login_on_postgres_and_sqlite,
--                    20260319170822_add_index_to_users_login
--   email_addresses  20150113194759_create_email_addresses,
--                    20150113213955_add_email_addresses_user_id_index
--   groups_users     20090704172355_create_groups_users
--   projects         001_setup, 037, 051, 087, 094, 104, 106, 20091220183509, 20101114115114,
--                    20101114115359, 20130202090625, 20151031095005, 20170309214320,
--                    20210705111300, 20241213003659
--   members          001_setup, 075_add_members_mail_notification,
--                    20090503121510_drop_members_role_id, 20091017214015, 20101104182107
--   member_roles     20090503121501_create_member_roles,
--                    20090704172358_add_member_roles_inherited_from, 20091017213716,
--                    20161002133421_add_index_on_member_roles_inherited_from
--   roles            001_setup, 020, 059, 061, 062_insert_builtin_roles, 063, 076,
--                    20110408103312, 20141109112308, 20150526183158, 20150528084820,
--                    20160416072926, 20160529063352, 20190620135549, 20220806215628,
--                    20241103184550
--   watchers         039_create_watchers, 20090214190337, 20091017213228
--   tokens           001_setup, 20091017213444, 20130201184705, 20151024082034
--   user_preferences 008, 009, 079, 20091017213835, 20151021190616
--   custom_fields    001_setup, 038, 078, 086, 088, 102, 20091017214107, 20101107130441,
--                    20120127174243, 20131124175346, 20131210180802, 20131214094309,
--                    20160416072926
--   custom_values    001_setup, 066, 20091017214519, 20190315094151, 20221012135202
--
-- What Redmine's code keeps that no constraint says: `type` is 'User', 'Group',
-- 'AnonymousUser', 'GroupAnonymous' or 'GroupNonMember'; `status` is 1 active, 2 registered,
-- 3 locked (0 for the anonymous user); login and group name are unique (case-insensitively,
-- checked in Ruby, no unique index); a user has one e-mail row with is_default; a user in a
-- group is a member of each of the group's projects, each role it has there inherited from
-- the group's role (member_roles.inherited_from = the group's member_roles.id).

CREATE TABLE users (
    id                      serial       PRIMARY KEY,
    login                   varchar      NOT NULL DEFAULT '',
    hashed_password         varchar(40)  NOT NULL DEFAULT '',
    firstname               varchar(30)  NOT NULL DEFAULT '',
    lastname                varchar(255) NOT NULL DEFAULT '',
    admin                   boolean      NOT NULL DEFAULT false,
    status                  integer      NOT NULL DEFAULT 1,
    last_login_on           timestamp,
    language                varchar(5)            DEFAULT '',
    auth_source_id          integer,
    created_on              timestamp,
    updated_on              timestamp,
    type                    varchar,
    mail_notification       varchar      NOT NULL DEFAULT '',
    salt                    varchar(64),
    must_change_passwd      boolean      NOT NULL DEFAULT false,
    passwd_changed_on       timestamp,
    twofa_scheme            varchar,
    twofa_totp_key          varchar,
    twofa_totp_last_used_at integer,
    twofa_required          boolean               DEFAULT false
);
CREATE INDEX index_users_on_id_and_type ON users (id, type);
CREATE INDEX index_users_on_auth_source_id ON users (auth_source_id);
CREATE INDEX index_users_on_type ON users (type);
CREATE INDEX index_users_on_lower_login ON users (lower(login));
CREATE INDEX index_users_on_login ON users (login);

CREATE TABLE email_addresses (
    id         serial    PRIMARY KEY,
    user_id    integer   NOT NULL,
    address    varchar   NOT NULL,
    is_default boolean   NOT NULL DEFAULT false,
    notify     boolean   NOT NULL DEFAULT true,
    created_on timestamp NOT NULL,
    updated_on timestamp NOT NULL
);
CREATE INDEX index_email_addresses_on_user_id ON email_addresses (user_id);

CREATE TABLE groups_users (
    group_id integer NOT NULL,
    user_id  integer NOT NULL
);
CREATE UNIQUE INDEX groups_users_ids ON groups_users (group_id, user_id);

CREATE TABLE projects (
    id                     serial    PRIMARY KEY,
    name                   varchar   NOT NULL DEFAULT '',
    description            text,
    homepage               varchar            DEFAULT '',
    is_public              boolean   NOT NULL DEFAULT true,
    parent_id              integer,
    created_on             timestamp,
    updated_on             timestamp,
    identifier             varchar,
    status                 integer   NOT NULL DEFAULT 1,
    lft                    integer,
    rgt                    integer,
    inherit_members        boolean   NOT NULL DEFAULT false,
    default_version_id     integer,
    default_assigned_to_id integer,
    default_issue_query_id integer
);
CREATE INDEX index_projects_on_lft ON projects (lft);
CREATE INDEX index_projects_on_rgt ON projects (rgt);
CREATE UNIQUE INDEX index_projects_on_identifier ON projects (identifier);

CREATE TABLE members (
    id                serial    PRIMARY KEY,
    user_id           integer   NOT NULL DEFAULT 0,
    project_id        integer   NOT NULL DEFAULT 0,
    created_on        timestamp,
    mail_notification boolean   NOT NULL DEFAULT false
);
CREATE INDEX index_members_on_user_id ON members (user_id);
CREATE INDEX index_members_on_project_id ON members (project_id);
CREATE UNIQUE INDEX index_members_on_user_id_and_project_id ON members (user_id, project_id);

CREATE TABLE member_roles (
    id             serial  PRIMARY KEY,
    member_id      integer NOT NULL,
    role_id        integer NOT NULL,
    inherited_from integer
);
CREATE INDEX index_member_roles_on_member_id ON member_roles (member_id);
CREATE INDEX index_member_roles_on_role_id ON member_roles (role_id);
CREATE INDEX index_member_roles_on_inherited_from ON member_roles (inherited_from);

CREATE TABLE roles (
    id                             serial      PRIMARY KEY,
    name                           varchar(255) NOT NULL DEFAULT '',
    position                       integer,
    assignable                     boolean              DEFAULT true,
    builtin                        integer     NOT NULL DEFAULT 0,
    permissions                    text,
    issues_visibility              varchar(30) NOT NULL DEFAULT 'default',
    users_visibility               varchar(30) NOT NULL DEFAULT 'members_of_visible_projects',
    time_entries_visibility        varchar(30) NOT NULL DEFAULT 'all',
    all_roles_managed              boolean     NOT NULL DEFAULT true,
    settings                       text,
    default_time_entry_activity_id integer
);

CREATE TABLE watchers (
    id             serial  PRIMARY KEY,
    watchable_type varchar NOT NULL DEFAULT '',
    watchable_id   integer NOT NULL DEFAULT 0,
    user_id        integer
);
CREATE INDEX watchers_user_id_type ON watchers (user_id, watchable_type);
CREATE INDEX index_watchers_on_user_id ON watchers (user_id);
CREATE INDEX index_watchers_on_watchable_id_and_watchable_type ON watchers (watchable_id, watchable_type);

CREATE TABLE tokens (
    id         serial      PRIMARY KEY,
    user_id    integer     NOT NULL DEFAULT 0,
    action     varchar(30) NOT NULL DEFAULT '',
    value      varchar(40) NOT NULL DEFAULT '',
    created_on timestamp   NOT NULL,
    updated_on timestamp
);
CREATE INDEX index_tokens_on_user_id ON tokens (user_id);
CREATE UNIQUE INDEX tokens_value ON tokens (value);

CREATE TABLE user_preferences (
    id        serial  PRIMARY KEY,
    user_id   integer NOT NULL DEFAULT 0,
    others    text,
    hide_mail boolean          DEFAULT true,
    time_zone varchar
);
CREATE INDEX index_user_preferences_on_user_id ON user_preferences (user_id);

CREATE TABLE custom_fields (
    id              serial      PRIMARY KEY,
    type            varchar(30) NOT NULL DEFAULT '',
    name            varchar(30) NOT NULL DEFAULT '',
    field_format    varchar(30) NOT NULL DEFAULT '',
    possible_values text,
    regexp          varchar              DEFAULT '',
    min_length      integer,
    max_length      integer,
    is_required     boolean     NOT NULL DEFAULT false,
    is_for_all      boolean     NOT NULL DEFAULT false,
    is_filter       boolean     NOT NULL DEFAULT false,
    position        integer,
    searchable      boolean              DEFAULT false,
    default_value   text,
    editable        boolean              DEFAULT true,
    visible         boolean     NOT NULL DEFAULT true,
    multiple        boolean              DEFAULT false,
    format_store    text,
    description     text
);
CREATE INDEX index_custom_fields_on_id_and_type ON custom_fields (id, type);

CREATE TABLE custom_values (
    id              serial      PRIMARY KEY,
    customized_type varchar(30) NOT NULL DEFAULT '',
    customized_id   integer     NOT NULL DEFAULT 0,
    custom_field_id integer     NOT NULL DEFAULT 0,
    value           text
);
CREATE INDEX index_custom_values_on_custom_field_id ON custom_values (custom_field_id);
CREATE INDEX custom_values_customized_custom_field ON custom_values (customized_type, customized_id, custom_field_id);

-- === What a fresh install holds ===

-- 001_setup creates the administrator (its mail moved to email_addresses by
-- 20150113211532_populate_email_addresses; 20160404080304 makes it change its password).
INSERT INTO users (login, hashed_password, firstname, lastname, admin, status, language,
                   created_on, updated_on, type, mail_notification, must_change_passwd)
VALUES ('admin', 'd033e22ae348aeb5660fc2140aec35850c4da997', 'Redmine', 'Admin', true, 1, '',
        '2024-01-15 09:30:00', '2024-01-15 09:30:00', 'User', 'all', true);
INSERT INTO email_addresses (user_id, address, is_default, notify, created_on, updated_on)
VALUES (1, 'admin@dummy.invalid', true, true, '2024-01-15 09:30:00', '2024-01-15 09:30:00');

-- Built-in principals SCIM must never see or touch: the groups of
-- 20140920094058_insert_builtin_groups, and the anonymous user User.anonymous creates on the
-- first request.
INSERT INTO users (login, firstname, lastname, status, created_on, updated_on, type, mail_notification) VALUES
    ('', '', 'Anonymous users', 1, '2024-01-15 09:30:00', '2024-01-15 09:30:00', 'GroupAnonymous', ''),
    ('', '', 'Non member users', 1, '2024-01-15 09:30:00', '2024-01-15 09:30:00', 'GroupNonMember', ''),
    ('', '', 'Anonymous', 0, '2024-01-15 09:30:01', '2024-01-15 09:30:01', 'AnonymousUser', 'only_my_events');

-- 062_insert_builtin_roles (builtin 1 = non member, 2 = anonymous), then the roles
-- `rake redmine:load_default_data` loads (lib/redmine/default_data/loader.rb), permissions
-- shortened.
INSERT INTO roles (name, position, assignable, builtin, permissions, issues_visibility, users_visibility) VALUES
    ('Non member', 0, true, 1, E'---\n- :view_issues\n', 'default', 'members_of_visible_projects'),
    ('Anonymous', 0, true, 2, E'---\n- :view_issues\n', 'default', 'members_of_visible_projects'),
    ('Manager', 1, true, 0, E'---\n- :add_project\n- :edit_project\n- :manage_members\n', 'all', 'all'),
    ('Developer', 2, true, 0, E'---\n- :view_issues\n- :add_issues\n- :edit_issues\n', 'default', 'all'),
    ('Reporter', 3, true, 0, E'---\n- :view_issues\n- :add_issues\n', 'default', 'all');

-- User custom fields the integrator creates (Administration » Custom fields » Users) for the
-- attributes identity providers send that Redmine has no column for. A value is a
-- custom_values row (customized_type 'Principal'); a "user" field holds a user's id as text.
INSERT INTO custom_fields (type, name, field_format, regexp, is_filter, position, searchable, editable, visible, multiple, format_store) VALUES
    ('UserCustomField', 'Job title', 'string', '', true, 1, true, true, true, false, E'---\ntext_formatting: \'\'\nurl_pattern: \'\'\n'),
    ('UserCustomField', 'Work phone', 'string', '', false, 2, false, true, true, false, E'---\ntext_formatting: \'\'\nurl_pattern: \'\'\n'),
    ('UserCustomField', 'Mobile phone', 'string', '', false, 3, false, true, true, false, E'---\ntext_formatting: \'\'\nurl_pattern: \'\'\n'),
    ('UserCustomField', 'Department', 'string', '', true, 4, true, true, true, false, E'---\ntext_formatting: \'\'\nurl_pattern: \'\'\n'),
    ('UserCustomField', 'Employee number', 'string', '', true, 5, false, true, false, false, E'---\ntext_formatting: \'\'\nurl_pattern: \'\'\n'),
    ('UserCustomField', 'Manager', 'user', '', true, 6, false, true, true, false, E'---\nuser_role: []\nedit_tag_style: \'\'\n');
