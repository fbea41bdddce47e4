//! Reading notary-server and notary-signer databases on PostgreSQL.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::super::{Change, ChangeCategory, Error, Result};
use super::{
    NotaryPrivateKey, ServerReader, SignerReader, SourceRepository, checked_file, optional_time,
    time_from_micros,
};

/// Times as microseconds since the epoch: works for `timestamp` and
/// `timestamptz` columns alike (notary's migrations used both).
const MICROS: &str =
    "(EXTRACT(EPOCH FROM COALESCE(created_at, updated_at, TIMESTAMP 'epoch')) * 1000000)::BIGINT";

/// One connection in a read-only, repeatable-read transaction.
async fn open_read_only(url: &str) -> Result<PgConnection> {
    let options: PgConnectOptions = url.parse()?;
    let mut conn = PgConnection::connect_with(&options).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// notary-server's database on PostgreSQL.
#[derive(Debug)]
pub struct PgServerReader {
    conn: PgConnection,
}

impl PgServerReader {
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            conn: open_read_only(url).await?,
        })
    }
}

impl ServerReader for PgServerReader {
    async fn guns_after(&mut self, after: &str, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT gun FROM tuf_files WHERE deleted_at IS NULL AND gun > $1 \
             UNION SELECT gun FROM changefeed WHERE gun > $1 ORDER BY 1 LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut self.conn)
        .await?)
    }

    async fn repository(&mut self, gun: &str) -> Result<SourceRepository> {
        let mut repository = SourceRepository {
            gun: gun.to_string(),
            ..SourceRepository::default()
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT role, version::BIGINT AS version, sha256, data, {MICROS} AS at \
             FROM tuf_files WHERE gun = $1 AND deleted_at IS NULL ORDER BY role, version"
        )))
        .bind(gun)
        .fetch_all(&mut self.conn)
        .await?;
        for row in rows {
            let file = checked_file(
                row.try_get("role")?,
                row.try_get("version")?,
                row.try_get("sha256")?,
                row.try_get("data")?,
                time_from_micros(row.try_get("at")?)?,
                &mut repository.corrupt,
            );
            repository.files.push(file);
        }
        let changes = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id::BIGINT AS id, version::BIGINT AS version, sha256, category, \
             {} AS at FROM changefeed WHERE gun = $1 ORDER BY id",
            MICROS.replace("COALESCE(created_at, updated_at, ", "COALESCE(created_at, ")
        )))
        .bind(gun)
        .fetch_all(&mut self.conn)
        .await?;
        for row in changes {
            let category: String = row.try_get("category")?;
            let category = match category.as_str() {
                "update" => ChangeCategory::Update,
                "deletion" => ChangeCategory::Deletion,
                other => {
                    return Err(Error::Backend(sqlx::Error::Decode(
                        format!("unknown changefeed category {other:?}").into(),
                    )));
                }
            };
            repository.changes.push(Change {
                id: row.try_get("id")?,
                created_at: time_from_micros(row.try_get("at")?)?,
                gun: gun.to_string(),
                version: row.try_get("version")?,
                sha256: row
                    .try_get::<Option<String>, _>("sha256")?
                    .unwrap_or_default(),
                category,
            });
        }
        Ok(repository)
    }
}

/// notary-signer's database on PostgreSQL.
#[derive(Debug)]
pub struct PgSignerReader {
    conn: PgConnection,
}

impl PgSignerReader {
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            conn: open_read_only(url).await?,
        })
    }
}

impl SignerReader for PgSignerReader {
    async fn key(&mut self, key_id: &str) -> Result<Option<NotaryPrivateKey>> {
        let row = sqlx::query(
            "SELECT key_id, algorithm, passphrase_alias, public, private, \
             COALESCE(gun, '') AS gun, COALESCE(role, '') AS role, \
             (EXTRACT(EPOCH FROM created_at) * 1000000)::BIGINT AS created_at, \
             (EXTRACT(EPOCH FROM last_used) * 1000000)::BIGINT AS last_used \
             FROM private_keys WHERE key_id = $1 AND deleted_at IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&mut self.conn)
        .await?;
        row.map(|row| -> Result<NotaryPrivateKey> {
            Ok(NotaryPrivateKey {
                key_id: row.try_get("key_id")?,
                algorithm: row.try_get("algorithm")?,
                passphrase_alias: row.try_get("passphrase_alias")?,
                public: row.try_get("public")?,
                private: row.try_get("private")?,
                gun: row.try_get("gun")?,
                role: row.try_get("role")?,
                created_at: optional_time(row.try_get("created_at")?)?,
                last_used: optional_time(row.try_get("last_used")?)?,
            })
        })
        .transpose()
    }
}
