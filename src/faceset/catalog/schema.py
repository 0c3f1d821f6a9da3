"""The catalog's schema: append-only migrations and the enumerations the CHECK constraints spell.

Never edit a released migration; append one. The enumerations below are the one place a value list
lives: the v3 CHECK constraints and the code both follow them (``tests/test_catalog_layer.py`` checks
that they agree).
"""

from __future__ import annotations

CONSENT_BASES = ("consent", "license", "public_domain", "research_exemption", "unknown")

# new (ingested, not scanned) | ok (>= 1 face kept) | no_face | error (scan failed) | blocked
# (every face belongs to a forgotten person: the photo is erased or waits for purge)
IMAGE_STATUSES = ("new", "ok", "no_face", "error", "blocked")
FACE_STATUSES = ("ok", "low_quality", "not_real_face")
# faces.kind: the real-face verifier's verdict (scan/verify.py); NULL when the face was not verified
FACE_KINDS = ("real", "cartoon", "painting", "render", "sculpture", "object", "animal")
FILE_OUTCOMES = ("added", "duplicate", "rejected")
# reason_code of a file: why it was rejected (imageio / sources / blocklist) or how it duplicates
REJECT_CODES = ("zero_byte", "truncated", "corrupt", "not_image", "unsupported", "too_small", "bomb",
                "unsafe_path", "too_large_file", "missing", "unreadable", "blocked", "too_elongated")
DUPLICATE_CODES = ("same_bytes", "same_pixels")
LABEL_ORIGINS = ("folder", "manifest", "regex", "user", "self_reported")
SPLITS = ("train", "val", "test")
SOURCE_KINDS = ("folder", "zip", "tar", "manifest", "file", "campaign")
EXPORT_FORMATS = ("imagefolder", "zip", "webdataset", "parquet")
EXPORT_WHAT = ("crops", "chips", "images")
# Human review decisions, stored per FACE (person ids change when clustering reruns): two faces are the
# same person (must_link) or not (cannot_link), or a face is no person at all (poster, painting, screen).
DECISION_KINDS = ("must_link", "cannot_link", "not_a_person")
# Consented collection: what a contributor may agree to, one tick each; how a campaign treats bystanders.
CAMPAIGN_SCOPES = ("dataset", "training", "publication", "commercial")
CAMPAIGN_STATUSES = ("open", "closed")
CONTRIBUTION_STATUSES = ("active", "withdrawn", "expired")
BYSTANDER_POLICIES = ("blur", "reject")
# What the erasure journal (pending_shred) holds: store objects, derived artefacts, export folders.
SHRED_KINDS = ("store", "derived", "export_folder", "partial_export")

# Every column that holds a store key. Erasure and gc read this list, nothing else.
STORE_KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("images", "store_key"),
    ("faces", "chip_key"),
    ("faces", "crop_key"),
)

MIGRATIONS: list[str] = [
    # v1: the whole pipeline's tables, so later stages only fill them.
    """
    CREATE TABLE sources(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,                 -- folder|zip|tar|manifest|file
        uri TEXT,                           -- where it was read from
        license TEXT NOT NULL,
        consent TEXT NOT NULL,              -- one of CONSENT_BASES
        consent_expires TEXT,               -- ISO date or NULL
        notes TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        pixel_sha TEXT NOT NULL UNIQUE,     -- sha256 of decoded RGB + shape: re-encodes collapse here
        sha256 TEXT NOT NULL,               -- sha256 of the first original file's bytes
        store_key TEXT NOT NULL,            -- clean stored copy (oriented, no metadata)
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        license TEXT,                       -- per-row override, NULL = the source's
        consent TEXT,
        consent_expires TEXT,
        status TEXT NOT NULL DEFAULT 'new',
        status_reason TEXT,
        dup_of INTEGER REFERENCES images(id) ON DELETE SET NULL,  -- near-duplicate of a kept image
        created_at TEXT NOT NULL,
        scanned_at TEXT
    );
    CREATE INDEX images_status ON images(status);
    CREATE INDEX images_sha ON images(sha256);
    CREATE TABLE files(                     -- every original path seen, rejects included
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        path TEXT NOT NULL,
        sha256 TEXT,
        size INTEGER,
        image_id INTEGER REFERENCES images(id) ON DELETE CASCADE,
        outcome TEXT NOT NULL,              -- added|duplicate|rejected|blocked
        reason_code TEXT,
        reason TEXT,
        seen_at TEXT NOT NULL,
        UNIQUE(source_id, path)
    );
    CREATE INDEX files_image ON files(image_id);
    CREATE INDEX files_sha ON files(sha256);
    CREATE TABLE people(
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        n_faces INTEGER NOT NULL DEFAULT 0,
        centroid BLOB,                      -- float32[128]
        split TEXT,                         -- train|val|test, assigned once
        consent TEXT,                       -- per-subject basis, NULL = the images' own
        consent_expires TEXT,
        name TEXT
    );
    CREATE TABLE faces(
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
        score REAL,
        detector TEXT,
        landmarks TEXT,                     -- JSON [[x, y] * 5], image coordinates
        is_main INTEGER NOT NULL DEFAULT 0,
        size REAL, blur REAL, brightness REAL, yaw REAL, quality REAL,
        embedding BLOB,                     -- float32[128], dlib ResNet
        chip_key TEXT,                      -- 150 px aligned chip in the store
        crop_key TEXT,                      -- larger aligned crop with margin
        person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
        status TEXT NOT NULL DEFAULT 'ok',  -- ok|low_quality|bystander_blurred
        UNIQUE(image_id, idx)
    );
    CREATE INDEX faces_person ON faces(person_id);
    CREATE TABLE labels(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        origin TEXT NOT NULL,               -- folder|manifest|regex|user
        updated_at TEXT NOT NULL,
        PRIMARY KEY(image_id, name)
    );
    CREATE TABLE exports(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        what TEXT NOT NULL,
        params TEXT NOT NULL,               -- JSON: everything needed to rebuild it
        created_at TEXT NOT NULL,
        stale INTEGER NOT NULL DEFAULT 0,
        stale_reason TEXT
    );
    CREATE TABLE export_items(
        export_id INTEGER NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
        image_id INTEGER,
        face_id INTEGER
    );
    CREATE INDEX export_items_image ON export_items(image_id);
    CREATE TABLE blocklist(
        id INTEGER PRIMARY KEY,
        template BLOB NOT NULL,             -- see privacy/ for what it is and is not
        radius REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        details TEXT NOT NULL               -- JSON counts and parameters; never biometric data
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    """,
    # v2 (curate): perceptual hashes for near-duplicate search, and small stage settings
    # (e.g. the split parameters exporters must honour).
    """
    ALTER TABLE images ADD COLUMN phash TEXT;
    ALTER TABLE images ADD COLUMN phash_flip TEXT;
    CREATE TABLE settings(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # v3: the schema says what it means. CHECK constraints on every enumerated column, a real
    # 'blocked' image status (was no_face + status_reason 'blocked'), foreign keys and indexes on
    # export_items, dead columns and values dropped (sources.notes, people.name, faces status
    # 'bystander_blurred', files outcome 'blocked'). Tables are rebuilt (SQLite cannot add CHECKs);
    # the migration runs with foreign keys off and checks them before it commits.
    """
    CREATE TABLE sources_v3(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK(kind IN ('folder','zip','tar','manifest','file','campaign')),
        uri TEXT,
        license TEXT NOT NULL,
        consent TEXT NOT NULL CHECK(consent IN ('consent','license','public_domain','research_exemption','unknown')),
        consent_expires TEXT,
        created_at TEXT NOT NULL
    );
    INSERT INTO sources_v3 SELECT id, name, kind, uri, license, consent, consent_expires, created_at FROM sources;
    DROP TABLE sources;
    ALTER TABLE sources_v3 RENAME TO sources;
    CREATE TABLE images_v3(
        id INTEGER PRIMARY KEY,
        pixel_sha TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        store_key TEXT NOT NULL,
        format TEXT NOT NULL,
        width INTEGER NOT NULL CHECK(width > 0),
        height INTEGER NOT NULL CHECK(height > 0),
        bytes INTEGER NOT NULL,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        license TEXT,
        consent TEXT CHECK(consent IS NULL OR consent IN (
            'consent','license','public_domain','research_exemption','unknown')),
        consent_expires TEXT,
        status TEXT NOT NULL DEFAULT 'new' CHECK(status IN ('new','ok','no_face','error','blocked')),
        status_reason TEXT,
        dup_of INTEGER REFERENCES images(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        scanned_at TEXT,
        phash TEXT,
        phash_flip TEXT
    );
    INSERT INTO images_v3 SELECT id, pixel_sha, sha256, store_key, format, width, height, bytes, source_id,
        license, consent, consent_expires,
        CASE WHEN status='no_face' AND status_reason='blocked' THEN 'blocked' ELSE status END,
        CASE WHEN status='no_face' AND status_reason='blocked' THEN NULL ELSE status_reason END,
        dup_of, created_at, scanned_at, phash, phash_flip FROM images;
    DROP TABLE images;
    ALTER TABLE images_v3 RENAME TO images;
    CREATE INDEX images_status ON images(status);
    CREATE INDEX images_sha ON images(sha256);
    CREATE INDEX images_pixel_sha ON images(pixel_sha);
    CREATE INDEX images_dup_of ON images(dup_of);
    CREATE TABLE files_v3(
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        path TEXT NOT NULL,
        sha256 TEXT,
        size INTEGER,
        image_id INTEGER REFERENCES images(id) ON DELETE CASCADE,
        outcome TEXT NOT NULL CHECK(outcome IN ('added','duplicate','rejected')),
        reason_code TEXT CHECK(reason_code IS NULL OR reason_code IN (
            'zero_byte','truncated','corrupt','not_image','unsupported','too_small','bomb','unsafe_path',
            'too_large_file','missing','unreadable','blocked','too_elongated','same_bytes','same_pixels')),
        reason TEXT,
        seen_at TEXT NOT NULL,
        UNIQUE(source_id, path),
        CHECK((outcome = 'added') = (reason_code IS NULL))
    );
    INSERT INTO files_v3 SELECT id, source_id, path, sha256, size, image_id,
        CASE WHEN outcome='blocked' THEN 'rejected' ELSE outcome END,
        CASE WHEN outcome='blocked' THEN 'blocked' ELSE reason_code END,
        reason, seen_at FROM files;
    DROP TABLE files;
    ALTER TABLE files_v3 RENAME TO files;
    CREATE INDEX files_image ON files(image_id);
    CREATE INDEX files_sha ON files(sha256);
    CREATE TABLE people_v3(
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        n_faces INTEGER NOT NULL DEFAULT 0 CHECK(n_faces >= 0),
        centroid BLOB,
        split TEXT CHECK(split IS NULL OR split IN ('train','val','test')),
        consent TEXT CHECK(consent IS NULL OR consent IN (
            'consent','license','public_domain','research_exemption','unknown')),
        consent_expires TEXT
    );
    INSERT INTO people_v3 SELECT id, created_at, n_faces, centroid, split, consent, consent_expires FROM people;
    DROP TABLE people;
    ALTER TABLE people_v3 RENAME TO people;
    CREATE TABLE faces_v3(
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
        score REAL,
        detector TEXT,
        landmarks TEXT,
        is_main INTEGER NOT NULL DEFAULT 0 CHECK(is_main IN (0, 1)),
        size REAL, blur REAL, brightness REAL, yaw REAL, quality REAL,
        embedding BLOB CHECK(embedding IS NULL OR length(embedding) = 512),
        chip_key TEXT,
        crop_key TEXT,
        person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
        status TEXT NOT NULL DEFAULT 'ok' CHECK(status IN ('ok','low_quality','not_real_face')),
        UNIQUE(image_id, idx)
    );
    INSERT INTO faces_v3 SELECT id, image_id, idx, x, y, w, h, score, detector, landmarks, is_main,
        size, blur, brightness, yaw, quality, embedding, chip_key, crop_key, person_id,
        CASE WHEN status='low_quality' THEN 'low_quality' ELSE 'ok' END FROM faces;
    DROP TABLE faces;
    ALTER TABLE faces_v3 RENAME TO faces;
    CREATE INDEX faces_person ON faces(person_id);
    CREATE INDEX faces_status ON faces(status);
    CREATE TABLE labels_v3(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        name TEXT NOT NULL CHECK(length(name) > 0),
        value TEXT NOT NULL,
        origin TEXT NOT NULL CHECK(origin IN ('folder','manifest','regex','user','self_reported')),
        updated_at TEXT NOT NULL,
        PRIMARY KEY(image_id, name)
    );
    INSERT INTO labels_v3 SELECT image_id, name, value, origin, updated_at FROM labels;
    DROP TABLE labels;
    ALTER TABLE labels_v3 RENAME TO labels;
    CREATE INDEX labels_name ON labels(name, value);
    CREATE TABLE exports_v3(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        format TEXT NOT NULL CHECK(format IN ('imagefolder','zip','webdataset','parquet')),
        what TEXT NOT NULL CHECK(what IN ('crops','chips','images')),
        params TEXT NOT NULL,
        created_at TEXT NOT NULL,
        stale INTEGER NOT NULL DEFAULT 0 CHECK(stale IN (0, 1)),
        stale_reason TEXT
    );
    INSERT INTO exports_v3 SELECT id, path, format, what, params, created_at, stale, stale_reason FROM exports;
    CREATE TABLE export_items_v3(
        export_id INTEGER NOT NULL REFERENCES exports_v3(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        face_id INTEGER REFERENCES faces(id) ON DELETE CASCADE
    );
    INSERT INTO export_items_v3 SELECT export_id, image_id, face_id FROM export_items
        WHERE image_id IN (SELECT id FROM images)
          AND (face_id IS NULL OR face_id IN (SELECT id FROM faces));
    DROP TABLE export_items;
    DROP TABLE exports;
    ALTER TABLE exports_v3 RENAME TO exports;
    ALTER TABLE export_items_v3 RENAME TO export_items;
    CREATE INDEX export_items_export ON export_items(export_id);
    CREATE INDEX export_items_image ON export_items(image_id);
    CREATE INDEX export_items_face ON export_items(face_id);
    CREATE TABLE blocklist_v3(
        id INTEGER PRIMARY KEY,
        template BLOB NOT NULL CHECK(length(template) = 256),
        radius REAL NOT NULL CHECK(radius > 0),
        created_at TEXT NOT NULL
    );
    INSERT INTO blocklist_v3 SELECT id, template, radius, created_at FROM blocklist;
    DROP TABLE blocklist;
    ALTER TABLE blocklist_v3 RENAME TO blocklist;
    CREATE TABLE decisions(                 -- what a person decided in review; clustering must honour it
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK(kind IN ('must_link','cannot_link','not_a_person')),
        face_a INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
        face_b INTEGER REFERENCES faces(id) ON DELETE CASCADE,  -- NULL iff not_a_person
        created_at TEXT NOT NULL,
        CHECK((kind = 'not_a_person') = (face_b IS NULL)),
        CHECK(face_b IS NULL OR face_a < face_b)
    );
    CREATE UNIQUE INDEX decisions_pair ON decisions(kind, face_a, face_b) WHERE face_b IS NOT NULL;
    CREATE UNIQUE INDEX decisions_not_a_person ON decisions(face_a) WHERE kind = 'not_a_person';
    CREATE INDEX decisions_face_b ON decisions(face_b);
    -- consented collection (portal): campaigns, the consent texts people agreed to, contributions
    CREATE TABLE campaigns(
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE CHECK(length(slug) BETWEEN 1 AND 64),
        title TEXT NOT NULL,
        purpose TEXT NOT NULL,
        scopes TEXT NOT NULL,               -- JSON list, a subset of CAMPAIGN_SCOPES
        labels TEXT NOT NULL,               -- JSON [[name, kind], ...] the participant may self-report
        max_photos INTEGER NOT NULL CHECK(max_photos BETWEEN 1 AND 50),
        bystanders TEXT NOT NULL DEFAULT 'blur' CHECK(bystanders IN ('blur','reject')),
        expires TEXT,                       -- consent expiry of every contribution (ISO date)
        status TEXT NOT NULL DEFAULT 'open' CHECK(status IN ('open','closed')),
        source_id INTEGER REFERENCES sources(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        closed_at TEXT
    );
    CREATE TABLE consent_versions(
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        version INTEGER NOT NULL CHECK(version >= 1),
        text TEXT NOT NULL,
        sha256 TEXT NOT NULL CHECK(length(sha256) = 64),
        created_at TEXT NOT NULL,
        UNIQUE(campaign_id, version)
    );
    CREATE TABLE contributions(
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        consent_version_id INTEGER NOT NULL REFERENCES consent_versions(id),
        code_hash TEXT NOT NULL UNIQUE,     -- sha256 of the withdrawal code; the code itself is never stored
        person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK(status IN ('active','withdrawn','expired')),
        photos INTEGER NOT NULL DEFAULT 0 CHECK(photos >= 0),
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX contributions_campaign ON contributions(campaign_id, status);
    CREATE INDEX contributions_person ON contributions(person_id);
    CREATE TABLE scopes(                    -- what each contributor agreed to, one row per ticked scope
        contribution_id INTEGER NOT NULL REFERENCES contributions(id) ON DELETE CASCADE,
        scope TEXT NOT NULL CHECK(scope IN ('dataset','training','publication','commercial')),
        PRIMARY KEY(contribution_id, scope)
    );
    -- erasure journal (harden_a): what a committed erasure still has to shred, written in the erasing
    -- transaction and removed once done; also export folders being written or replaced (outside the workspace)
    CREATE TABLE pending_shred(
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK(kind IN ('store','derived','export_folder','partial_export')),
        target TEXT NOT NULL,               -- store key | 'workspace' (cache/, sheets/, report) | folder path
        reason TEXT NOT NULL,               -- forget | blur | purge | export ...
        pid INTEGER,                        -- partial_export: the writing process (alive = still writing)
        export_id INTEGER,
        created_at TEXT NOT NULL,
        UNIQUE(kind, target)
    );
    -- detection v2 (W_detect): the real-human-face verifier's verdict per face; a face it rejects has
    -- status 'not_real_face' and its kind here (cartoon, painting, ...); p_real its P(real)
    ALTER TABLE faces ADD COLUMN kind TEXT CHECK(kind IS NULL OR kind IN
        ('real','cartoon','painting','render','sculpture','object','animal'));
    ALTER TABLE faces ADD COLUMN p_real REAL CHECK(p_real IS NULL OR (p_real >= 0 AND p_real <= 1));
    """,
]
