//! Console sessions (`sessions` table): a person signs in with a named token and gets a
//! session cookie. Rows are stored (any instance serves any session) by the SHA-256 of the
//! cookie's value, so a copy of the table opens nothing; a session ends after
//! [`IDLE`] without a request or [`MAX_AGE`] after it began, whichever comes first.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, Value};
use sha2::{Digest, Sha256};

use super::{Db, StorageError, now, stmt};

/// A session unused this long has ended.
pub const IDLE: Duration = Duration::minutes(30);
/// A session this old has ended, used or not.
pub const MAX_AGE: Duration = Duration::hours(12);
/// `last_seen` is written again only when it is older than this: a page that refreshes
/// every 2 s costs no write per refresh.
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The named token it was opened with.
    pub token_name: String,
    /// What every state-changing request of this session must carry (`X-CSRF-Token`).
    pub csrf: String,
    pub created_at: DateTime<Utc>,
}

fn id_hash(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

/// 32 random bytes, URL-safe base64 (for the cookie and the CSRF token).
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // fastrand is not a CSPRNG: ring's SystemRandom is.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Opens a session for `token_name`; returns the cookie's value and the session.
pub async fn open_session(db: &Db, token_name: &str) -> Result<(String, Session), StorageError> {
    let cookie = random_token();
    let session = Session { token_name: token_name.to_string(), csrf: random_token(), created_at: now() };
    let values: Vec<Value> = vec![id_hash(&cookie).into(), token_name.into(), session.csrf.clone().into(), session.created_at.into(), session.created_at.into()];
    db.execute_raw(stmt(db, "INSERT INTO sessions (id_hash, token_name, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?)", values)).await?;
    Ok((cookie, session))
}

/// The session of `cookie` if it is live (and notes that it was used); an ended one is
/// deleted.
pub async fn find_session(db: &Db, cookie: &str) -> Result<Option<Session>, StorageError> {
    let hash = id_hash(cookie);
    let row = db.query_one_raw(stmt(db, "SELECT token_name, csrf, created_at, last_seen FROM sessions WHERE id_hash = ?", vec![hash.clone().into()])).await?;
    let Some(row) = row else { return Ok(None) };
    let session = Session { token_name: row.try_get("", "token_name")?, csrf: row.try_get("", "csrf")?, created_at: row.try_get("", "created_at")? };
    let last_seen: DateTime<Utc> = row.try_get("", "last_seen")?;
    let t = now();
    if t - last_seen > IDLE || t - session.created_at > MAX_AGE {
        close_session(db, cookie).await?;
        return Ok(None);
    }
    if t - last_seen > TOUCH_EVERY {
        db.execute_raw(stmt(db, "UPDATE sessions SET last_seen = ? WHERE id_hash = ?", vec![t.into(), hash.into()])).await?;
    }
    Ok(Some(session))
}

/// Ends the session of `cookie` (sign out).
pub async fn close_session(db: &Db, cookie: &str) -> Result<(), StorageError> {
    db.execute_raw(stmt(db, "DELETE FROM sessions WHERE id_hash = ?", vec![id_hash(cookie).into()])).await?;
    Ok(())
}

/// Deletes every ended session; returns how many.
pub async fn prune_sessions(db: &Db) -> Result<u64, StorageError> {
    let t = now();
    let res = db.execute_raw(stmt(db, "DELETE FROM sessions WHERE last_seen < ? OR created_at < ?", vec![(t - IDLE).into(), (t - MAX_AGE).into()])).await?;
    Ok(res.rows_affected())
}
