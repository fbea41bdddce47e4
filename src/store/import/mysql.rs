//! Reading notary-server and notary-signer databases on MySQL/MariaDB.

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};

use super::super::{Change, ChangeCategory, Error, Result};
use super::{
    NotaryPrivateKey, ServerReader, SignerReader, SourceRepository, checked_file, optional_time,
    time_from_micros,
};

/// One connection in a read-only, repeatable-read transaction, in UTC:
/// Go's MySQL driver writes DATETIMEs in UTC (its default `loc`).
async fn open_read_only(url: &str) -> Result<MySqlConnection> {
    let options: MySqlConnectOptions = url.parse()?;
    let mut conn = MySqlConnection::connect_with(&options).await?;
    for statement in [
        "SET time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION READ ONLY",
    ] {
        sqlx::raw_sql(statement).execute(&mut conn).await?;
    }
    Ok(conn)
}

/// notary-server's database on MySQL/MariaDB.
#[derive(Debug)]
pub struct MySqlServerReader {
    conn: MySqlConnection,
}

impl MySqlServerReader {
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            conn: open_read_only(url).await?,
        })
    }
}

impl ServerReader for MySqlServerReader {
    async fn guns_after(&mut self, after: &str, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT gun FROM tuf_files WHERE deleted_at IS NULL AND gun > ? \
             UNION SELECT gun FROM changefeed WHERE gun > ? ORDER BY 1 LIMIT ?",
        )
        .bind(after)
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
        let rows = sqlx::query(
            "SELECT role, CAST(version AS SIGNED) AS version, sha256, data, \
             CAST(ROUND(UNIX_TIMESTAMP(COALESCE(created_at, updated_at, FROM_UNIXTIME(0))) \
             * 1000000) AS SIGNED) AS at \
             FROM tuf_files WHERE gun = ? AND deleted_at IS NULL ORDER BY role, version",
        )
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
        let changes = sqlx::query(
            "SELECT CAST(id AS SIGNED) AS id, CAST(version AS SIGNED) AS version, sha256, \
             category, CAST(ROUND(UNIX_TIMESTAMP(COALESCE(created_at, FROM_UNIXTIME(0))) \
             * 1000000) AS SIGNED) AS at FROM changefeed WHERE gun = ? ORDER BY id",
        )
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

/// notary-signer's database on MySQL/MariaDB.
#[derive(Debug)]
pub struct MySqlSignerReader {
    conn: MySqlConnection,
}

impl MySqlSignerReader {
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            conn: open_read_only(url).await?,
        })
    }
}

impl SignerReader for MySqlSignerReader {
    async fn key(&mut self, key_id: &str) -> Result<Option<NotaryPrivateKey>> {
        let row = sqlx::query(
            "SELECT key_id, algorithm, passphrase_alias, public, private, \
             COALESCE(gun, '') AS gun, COALESCE(role, '') AS role, \
             CAST(ROUND(UNIX_TIMESTAMP(created_at) * 1000000) AS SIGNED) AS created_at, \
             CAST(ROUND(UNIX_TIMESTAMP(last_used) * 1000000) AS SIGNED) AS last_used \
             FROM private_keys WHERE key_id = ? AND deleted_at IS NULL",
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
