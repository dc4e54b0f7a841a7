-- Settlement batches (router/src/ledger/batches.rs, router/src/settlement.rs).
--
-- A batch is written here, with its receipts assigned to it
-- (receipts.settled_batch), before its transaction is sent; the chain accepts
-- a batch id once, so after a crash the same batch is sent again safely.
-- `plan` is the batch as posted (JSON: root, debits, credits, fee, count).
CREATE TABLE settlement_batches (
    id BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    receipt_count BIGINT NOT NULL,
    total TEXT NOT NULL,
    fee TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('written', 'confirmed', 'finalized', 'abandoned')),
    tx_hash TEXT,
    note TEXT,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT
);
CREATE INDEX settlement_batches_state ON settlement_batches (state, id);
