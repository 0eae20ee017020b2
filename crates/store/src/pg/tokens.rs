//! [`Tokens`] on PostgreSQL.

use postgres::Row;

use super::PgStore;
use super::pool::Db;
use crate::StoreError;
use crate::token::{self, Role, TokenInfo, Tokens};

fn info(db: &Db<'_>, row: &Row) -> Result<TokenInfo, StoreError> {
    let name: String = db.get(row, 0, || "the name of a token".to_owned())?;
    let role: String = db.get(row, 1, || format!("the role of token {name:?}"))?;
    let role = role.parse::<Role>().map_err(|e| StoreError::Decode {
        location: db.shared.location.clone(),
        what: format!("the role of token {name:?}"),
        detail: e.to_string(),
    })?;
    let created_at_ms = db.get(row, 2, || format!("the creation time of token {name:?}"))?;
    Ok(TokenInfo {
        name,
        role,
        created_at_ms,
    })
}

impl Tokens for PgStore {
    fn create_token(&self, name: &str, role: Role, at_ms: i64) -> Result<String, StoreError> {
        token::validate_name(name)?;
        let (secret, hash) = token::new_secret()?;
        let op = "creating a token";
        let name = name.to_owned();
        self.write(op, move |db| {
            let inserted = db.execute(
                op,
                "INSERT INTO backout.tokens (name, role, secret_sha256, created_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                &[&name, &role.as_str(), &hash.as_slice(), &at_ms],
            )?;
            if inserted == 0 {
                return Err(StoreError::TokenExists { name });
            }
            Ok(())
        })?;
        Ok(secret)
    }

    fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let Some(hash) = token::presented_hash(secret) else {
            return Ok(None);
        };
        let op = "verifying a token";
        self.read(op, move |db| {
            let row = db.query_opt(
                op,
                "SELECT name, role, created_at_ms, secret_sha256 FROM backout.tokens \
                 WHERE secret_sha256 = $1",
                &[&hash.as_slice()],
            )?;
            let Some(row) = row else { return Ok(None) };
            let stored: Vec<u8> = db.get(&row, 3, || "a token's hash".to_owned())?;
            if !token::hashes_match(&stored, &hash) {
                return Ok(None);
            }
            info(db, &row).map(Some)
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let op = "listing tokens";
        self.read(op, move |db| {
            let rows = db.query(
                op,
                "SELECT name, role, created_at_ms FROM backout.tokens ORDER BY name COLLATE \"C\"",
                &[],
            )?;
            rows.iter().map(|r| info(db, r)).collect()
        })
    }

    fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let op = "revoking a token";
        let name = name.to_owned();
        self.write(op, move |db| {
            // Locking every admin row serialises revocations that could
            // each leave the other as the last admin: the second one waits,
            // then sees the first one's delete.
            let admins = db.query(
                op,
                "SELECT name FROM backout.tokens WHERE role = 'admin' FOR UPDATE",
                &[],
            )?;
            let row = db.query_opt(
                op,
                "SELECT role FROM backout.tokens WHERE name = $1",
                &[&name],
            )?;
            let Some(row) = row else { return Ok(false) };
            let role: String = db.get(&row, 0, || format!("the role of token {name:?}"))?;
            if role == Role::Admin.as_str() && admins.len() <= 1 {
                return Err(StoreError::LastAdmin { name });
            }
            let deleted = db.execute(op, "DELETE FROM backout.tokens WHERE name = $1", &[&name])?;
            Ok(deleted > 0)
        })
    }
}
