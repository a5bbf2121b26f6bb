-- A legacy helpdesk application's own schema, as it was before anyone asked for SCIM.
-- Users and groups ("principals") share one table told apart by `kind`; e-mail addresses
-- live in a child table; the account state is an enum; passwords are the app's business.

CREATE TYPE account_state AS ENUM ('active', 'locked', 'disabled');

CREATE TABLE principals (
    id            bigserial    PRIMARY KEY,
    kind          char(1)      NOT NULL CHECK (kind IN ('U', 'G')),
    login         varchar(64),
    display_name  varchar(128) NOT NULL,
    first_name    varchar(64),
    last_name     varchar(64),
    job_title     varchar(128),
    department    varchar(128),
    employee_no   varchar(32),
    phone         varchar(32),
    mobile        varchar(32),
    manager_id    bigint       REFERENCES principals (id) ON DELETE SET NULL,
    state         account_state NOT NULL DEFAULT 'active',
    password_hash text         NOT NULL,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX principals_login ON principals (lower(login));
CREATE UNIQUE INDEX principals_group_name ON principals (display_name) WHERE kind = 'G';

CREATE TABLE user_emails (
    user_id    bigint       NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    address    varchar(254) NOT NULL,
    is_primary boolean      NOT NULL DEFAULT false
);
CREATE INDEX user_emails_user ON user_emails (user_id);
CREATE UNIQUE INDEX user_emails_one_primary ON user_emails (user_id) WHERE is_primary;

CREATE TABLE group_members (
    group_id  bigint      NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    member_id bigint      NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);

-- What the app already had: its administrator, and a group of agents.
INSERT INTO principals (kind, login, display_name, first_name, last_name, password_hash)
VALUES ('U', 'helpdesk-admin', 'Helpdesk Admin', 'Helpdesk', 'Admin', '$2y$10$abcdefghijklmnopqrstuv');
INSERT INTO principals (kind, display_name, password_hash) VALUES ('G', 'Agents', '!');
INSERT INTO user_emails (user_id, address, is_primary) VALUES (1, 'admin@helpdesk.example', true);
INSERT INTO group_members (group_id, member_id) VALUES (2, 1);
