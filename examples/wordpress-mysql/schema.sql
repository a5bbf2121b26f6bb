-- WordPress's user tables on MariaDB or MySQL, as WordPress itself creates them.
--
-- Taken from WordPress core, src/wp-admin/includes/schema.php, wp_get_db_schema()
-- ($users_single_table and $usermeta_table; wordpress-develop commit 01501ab4787d), with
-- $wpdb->users = wp_users, $wpdb->usermeta = wp_usermeta, $max_index_length = 191 and
-- $charset_collate as wpdb::get_charset_collate() returns it on MariaDB 10.x and MySQL 5.7+.
--
-- As in WordPress, nothing makes user_login or user_email unique (wp_insert_user() checks
-- username_exists() in PHP before it inserts), and user_registered defaults to the zero date.
-- The sidecar checks user names itself inside each write, under GET_LOCK, and reads a zero
-- date as "no value".

CREATE TABLE wp_users (
	ID bigint(20) unsigned NOT NULL auto_increment,
	user_login varchar(60) NOT NULL default '',
	user_pass varchar(255) NOT NULL default '',
	user_nicename varchar(50) NOT NULL default '',
	user_email varchar(100) NOT NULL default '',
	user_url varchar(100) NOT NULL default '',
	user_registered datetime NOT NULL default '0000-00-00 00:00:00',
	user_activation_key varchar(255) NOT NULL default '',
	user_status int(11) NOT NULL default '0',
	display_name varchar(250) NOT NULL default '',
	PRIMARY KEY  (ID),
	KEY user_login_key (user_login),
	KEY user_nicename (user_nicename),
	KEY user_email (user_email)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_usermeta (
	umeta_id bigint(20) unsigned NOT NULL auto_increment,
	user_id bigint(20) unsigned NOT NULL default '0',
	meta_key varchar(255) default NULL,
	meta_value longtext,
	PRIMARY KEY  (umeta_id),
	KEY user_id (user_id),
	KEY meta_key (meta_key(191))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

-- What a fresh install leaves behind: wp_install() creates the administrator with
-- wp_create_user(), which writes these meta rows, and gives it the administrator role.
INSERT INTO wp_users (user_login, user_pass, user_nicename, user_email, user_registered, display_name)
VALUES ('admin', '$P$BvMHkAa0wq2tM1FEOj6bNmnoFjCRjV0', 'admin', 'admin@wordpress.example',
        '2024-01-15 09:30:00', 'admin');
INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES
    (1, 'nickname', 'admin'),
    (1, 'first_name', ''),
    (1, 'last_name', ''),
    (1, 'description', ''),
    (1, 'rich_editing', 'true'),
    (1, 'syntax_highlighting', 'true'),
    (1, 'comment_shortcuts', 'false'),
    (1, 'admin_color', 'fresh'),
    (1, 'use_ssl', '0'),
    (1, 'show_admin_bar_front', 'true'),
    (1, 'locale', ''),
    (1, 'wp_capabilities', 'a:1:{s:13:"administrator";b:1;}'),
    (1, 'wp_user_level', '10'),
    (1, 'dismissed_wp_pointers', ''),
    (1, 'show_welcome_panel', '1');
