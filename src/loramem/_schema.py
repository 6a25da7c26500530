"""The manifest's tables (``ModuleStore``). Layer 0: data only."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (
    module_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, created_at REAL NOT NULL,
    base_model TEXT NOT NULL, base_fingerprint TEXT NOT NULL, lora_spec TEXT NOT NULL,
    active_version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS modules_ns ON modules(namespace);
CREATE TABLE IF NOT EXISTS versions (
    module_id TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, created_at REAL NOT NULL,
    trainable_params INTEGER NOT NULL, knowledge_tokens INTEGER NOT NULL, recall REAL NOT NULL,
    sha256 TEXT NOT NULL, report TEXT NOT NULL, PRIMARY KEY (module_id, version));
CREATE TABLE IF NOT EXISTS items (
    namespace TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (namespace, item_id));
CREATE TABLE IF NOT EXISTS examples (
    namespace TEXT NOT NULL, item_id TEXT NOT NULL, idx INTEGER NOT NULL, format TEXT NOT NULL,
    prompt TEXT, completion TEXT NOT NULL, probe INTEGER NOT NULL, context TEXT,
    PRIMARY KEY (namespace, item_id, idx));
CREATE TABLE IF NOT EXISTS version_items (
    module_id TEXT NOT NULL, version INTEGER NOT NULL, item_id TEXT NOT NULL,
    PRIMARY KEY (module_id, version, item_id));
"""
# The short-term buffer (``loramem.pending``): one row per remembered item until a version holding it commits,
# which deletes the row in its own transaction. ``claim``: the consolidation training it; ``dropped`` 1: forgotten
# or replaced while claimed (a tombstone: the commit that trained it is refused, the item is never kept).
PENDING_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    namespace TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    created_at REAL NOT NULL, tokens INTEGER NOT NULL, embedding BLOB, claim TEXT,
    dropped INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (namespace, item_id));
CREATE TABLE IF NOT EXISTS consolidator (
    id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL,
    updated_at REAL NOT NULL, detail TEXT NOT NULL);
"""

