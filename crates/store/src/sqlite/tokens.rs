//! [`Tokens`] on SQLite.

use rusqlite::{OptionalExtension, Row};

use super::SqliteStore;
use super::errors::Ctx;
use crate::StoreError;
use crate::token::{self, Role, TokenInfo, Tokens};

fn info(
    ctx: &Ctx<'_>,
    (name, role, created_at_ms): (String, String, i64),
) -> Result<TokenInfo, StoreError> {
    let role = role
        .parse::<Role>()
        .map_err(|e| ctx.decode(format!("the role of token {name:?}"), e))?;
    Ok(TokenInfo {
        name,
        role,
        created_at_ms,
    })
}

fn raw(r: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

impl Tokens for SqliteStore {
    fn create_token(&self, name: &str, role: Role, at_ms: i64) -> Result<String, StoreError> {
        token::validate_name(name)?;
        let (secret, hash) = token::new_secret()?;
        let op = "creating a token";
        self.write(op, |ctx, tx| {
            let exists = tx
                .query_row("SELECT 1 FROM tokens WHERE name = ?1", [name], |_| Ok(()))
                .optional()
                .map_err(|e| ctx.err(op, e))?
                .is_some();
            if exists {
                return Err(StoreError::TokenExists {
                    name: name.to_owned(),
                });
            }
            tx.execute(
                "INSERT INTO tokens (name, role, secret_sha256, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
                (name, role.as_str(), hash.as_slice(), at_ms),
            )
            .map_err(|e| ctx.err(op, e))?;
            Ok(())
        })?;
        Ok(secret)
    }

    fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let Some(hash) = token::presented_hash(secret) else {
            return Ok(None);
        };
        let op = "verifying a token";
        self.read(|ctx, conn| {
            let row = conn
                .prepare_cached(
                    "SELECT name, role, created_at_ms, secret_sha256 FROM tokens \
                     WHERE secret_sha256 = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([hash.as_slice()], |r| {
                        Ok((raw(r)?, r.get::<_, Vec<u8>>(3)?))
                    })
                })
                .optional()
                .map_err(|e| ctx.err(op, e))?;
            match row {
                Some((row, stored)) if token::hashes_match(&stored, &hash) => {
                    info(ctx, row).map(Some)
                }
                _ => Ok(None),
            }
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let op = "listing tokens";
        self.read(|ctx, conn| {
            let rows = conn
                .prepare_cached("SELECT name, role, created_at_ms FROM tokens ORDER BY name")
                .and_then(|mut s| s.query_map([], raw)?.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ctx.err(op, e))?;
            rows.into_iter().map(|r| info(ctx, r)).collect()
        })
    }

    fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let op = "revoking a token";
        self.write(op, |ctx, tx| {
            // The immediate transaction holds the write lock, so the count
            // cannot change between this check and the delete.
            let (role, admins): (Option<String>, i64) = tx
                .query_row(
                    "SELECT (SELECT role FROM tokens WHERE name = ?1), \
                            (SELECT count(*) FROM tokens WHERE role = 'admin')",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| ctx.err(op, e))?;
            match role.as_deref() {
                None => return Ok(false),
                Some("admin") if admins <= 1 => {
                    return Err(StoreError::LastAdmin {
                        name: name.to_owned(),
                    });
                }
                Some(_) => {}
            }
            tx.execute("DELETE FROM tokens WHERE name = ?1", [name])
                .map(|n| n > 0)
                .map_err(|e| ctx.err(op, e))
        })
    }
}
