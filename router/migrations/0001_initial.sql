-- Cloister router ledger, initial schema.
--
-- Portable between SQLite and PostgreSQL: only BIGINT and TEXT columns, no
-- generated ids (the code chooses every key), booleans as BIGINT 0/1, hashes
-- and addresses as lowercase hex TEXT, JSON documents as TEXT.
-- Never store prompt or completion text in any table.

-- One row per account. `payer_secret` is the 32-byte secp256k1 secret of the
-- payer key the router holds for the account's plain-endpoint requests (hex).
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    balance BIGINT NOT NULL,
    payer_secret TEXT NOT NULL,
    payer_address TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Further payer addresses an account answers for: payer keys its users hold
-- themselves, for requests they seal on their own (lowercase 0x hex).
CREATE TABLE account_payers (
    address TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name),
    added_at BIGINT NOT NULL
);
CREATE INDEX account_payers_account ON account_payers (account);

-- API keys, stored only as the hex SHA-256 of the secret.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name),
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account);

-- Nodes the router knows: configured ('static') or announced ('joined').
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL CHECK (source IN ('static', 'joined')),
    added_at BIGINT NOT NULL
);

-- Every attestation verdict, hash-chained (see router/src/ledger/log.rs).
CREATE TABLE attestation_log (
    id BIGINT PRIMARY KEY,
    node_id TEXT NOT NULL,
    node_url TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    bundle TEXT NOT NULL,
    collateral TEXT,
    verdict TEXT NOT NULL,
    accepted BIGINT NOT NULL CHECK (accepted IN (0, 1)),
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE INDEX attestation_log_node ON attestation_log (node_id, id);

-- Usage receipts, each stored once. `digest` is the receipt's EIP-712
-- signing hash; `receipt` the SignedReceipt as JSON.
CREATE TABLE receipts (
    digest TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    node_id TEXT NOT NULL,
    account TEXT NOT NULL,
    payer TEXT NOT NULL,
    signer TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    charge BIGINT NOT NULL,
    receipt TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    settled_batch TEXT
);
CREATE INDEX receipts_account ON receipts (account, received_at);
CREATE INDEX receipts_received ON receipts (received_at);
CREATE INDEX receipts_settled_batch ON receipts (settled_batch);

-- What each receipt took from an account's balance (one row per receipt).
CREATE TABLE charges (
    receipt_digest TEXT PRIMARY KEY REFERENCES receipts (digest),
    account TEXT NOT NULL REFERENCES accounts (name),
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX charges_account ON charges (account);
