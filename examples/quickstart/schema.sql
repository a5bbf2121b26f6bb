-- The quickstart's "legacy app": the kind of schema an application grew long before anyone
-- asked for SCIM. scim-sidecar creates app.db from this file on first start, and never again.

CREATE TABLE accounts (
    id           INTEGER PRIMARY KEY,
    login        VARCHAR(64)  NOT NULL COLLATE NOCASE,
    first_name   VARCHAR(64),
    last_name    VARCHAR(64),
    display_name VARCHAR(128),
    email        VARCHAR(254),
    phone        VARCHAR(32),
    mobile       VARCHAR(32),
    job_title    VARCHAR(128),
    department   VARCHAR(128),
    employee_no  VARCHAR(32),
    manager_id   INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    status       CHAR(1)      NOT NULL DEFAULT 'A' CHECK (status IN ('A', 'D')),
    external_ref VARCHAR(128),
    created_at   TEXT,
    updated_at   TEXT
);
CREATE UNIQUE INDEX accounts_login ON accounts (login COLLATE NOCASE);
CREATE INDEX accounts_external_ref ON accounts (external_ref);

CREATE TABLE roles (
    id           INTEGER PRIMARY KEY,
    name         VARCHAR(128) NOT NULL COLLATE NOCASE,
    external_ref VARCHAR(128),
    created_at   TEXT,
    updated_at   TEXT
);
CREATE UNIQUE INDEX roles_name ON roles (name COLLATE NOCASE);

CREATE TABLE account_roles (
    role_id    INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    granted_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (role_id, account_id)
);
CREATE INDEX account_roles_account ON account_roles (account_id);

-- What the app already had before provisioning: its own administrator and a role.
INSERT INTO accounts (login, first_name, last_name, display_name, status, created_at, updated_at)
VALUES ('app-admin', 'App', 'Administrator', 'App Administrator', 'A',
        '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z');
INSERT INTO roles (name, created_at, updated_at)
VALUES ('administrators', '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z');
INSERT INTO account_roles (role_id, account_id) VALUES (1, 1);
