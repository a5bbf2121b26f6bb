-- WordPress's user tables, ported to PostgreSQL as WordPress-on-PostgreSQL installs have them.
--
-- The MySQL original is in WordPress core, wp-admin/includes/schema.php (wp_get_db_schema):
-- column for column, the same defaults and the same indexes, translated the way the pg4wp
-- plugin translates them: bigint(20) unsigned auto_increment -> bigserial, datetime ->
-- timestamp, longtext -> text, KEY x (col) -> CREATE INDEX wp_users_x, and the upper-case
-- primary key quoted ("ID"), because WordPress's PHP reads it back as $user->ID.
--
-- As in WordPress, nothing makes user_login or user_email unique: wp_insert_user() checks
-- username_exists() in PHP before it inserts. The sidecar does the same inside each write,
-- under an advisory lock, and says at start-up how to add an index if you want one.

CREATE TABLE wp_users (
    "ID"                bigserial    PRIMARY KEY,
    user_login          varchar(60)  NOT NULL DEFAULT '',
    user_pass           varchar(255) NOT NULL DEFAULT '',
    user_nicename       varchar(50)  NOT NULL DEFAULT '',
    user_email          varchar(100) NOT NULL DEFAULT '',
    user_url            varchar(100) NOT NULL DEFAULT '',
    -- MySQL's zero date '0000-00-00 00:00:00' does not exist in PostgreSQL.
    user_registered     timestamp    NOT NULL DEFAULT '0001-01-01 00:00:00',
    user_activation_key varchar(255) NOT NULL DEFAULT '',
    user_status         int          NOT NULL DEFAULT 0,
    display_name        varchar(250) NOT NULL DEFAULT ''
);
CREATE INDEX wp_users_user_login_key ON wp_users (user_login);
CREATE INDEX wp_users_user_nicename ON wp_users (user_nicename);
CREATE INDEX wp_users_user_email ON wp_users (user_email);

-- Everything else about a user is a key/value row: first_name, last_name, nickname,
-- wp_capabilities (the roles, PHP-serialised), and whatever plugins add.
CREATE TABLE wp_usermeta (
    umeta_id   bigserial    PRIMARY KEY,
    user_id    bigint       NOT NULL DEFAULT 0,
    meta_key   varchar(255),
    meta_value text
);
CREATE INDEX wp_usermeta_user_id ON wp_usermeta (user_id);
CREATE INDEX wp_usermeta_meta_key ON wp_usermeta (meta_key);

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
