//! The method bodies both backends share, written once.
//!
//! sqlx's executor traits are generic over the database but their bounds are
//! unwieldy to spell out for every bind type, so the shared code is a macro
//! instantiated per backend: the SQL (in [`crate::common`]) and the Rust are
//! identical, only the connection and pool types differ.

/// Binds a [`crate::common::RequestRow`] to `$query` in column order, the
/// one order every request statement (insert, update, multi-row insert) uses.
macro_rules! bind_request_row {
    ($query:expr, $row:expr) => {{
        let row = $row;
        $query
            .bind(row.id)
            .bind(row.status)
            .bind(row.action)
            .bind(row.resource)
            .bind(row.environment)
            .bind(row.principal)
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(row.idempotency_key)
            .bind(row.version)
            .bind(row.body)
    }};
}

/// Reads ledger nodes `(level, idx)` through `$exec` (the writer's
/// transaction or the read pool) in one query, in the order asked.
macro_rules! fetch_nodes {
    ($exec:expr, $coords:expr) => {{
        use $crate::common as c;
        let coords: &[(u32, u64)] = $coords;
        if coords.is_empty() {
            return Ok(Vec::new());
        }
        let sql = c::select_nodes_sql(coords.len());
        let mut query = sqlx::query_as::<_, (i64, i64, Vec<u8>)>(&sql);
        for &(level, idx) in coords {
            query = query.bind(i64::from(level)).bind(c::to_i64(idx));
        }
        let rows = query.fetch_all($exec).await.map_err(c::db_err)?;
        c::order_nodes(coords, rows)
    }};
}

/// [`crate::Store::scan_ledger`] through sqlx on `$pool`: each row's
/// columns are borrowed, not copied, into the leaf encoder.
macro_rules! sqlx_scan {
    ($pool:expr, $from:expr, $to:expr, $into:expr) => {{
        use sqlx::Row as _;
        use $crate::scan as s;
        let (from, to): (u64, u64) = ($from, $to);
        let scan: &mut s::LedgerScan = $into;
        let Some((lo, hi)) = s::capped(from, to) else {
            scan.reset(from, from);
            return Ok(());
        };
        let corrupt = |what: &str, e: sqlx::Error| {
            $crate::StoreError::Corrupt(format!("ledger scan at {lo}: {what}: {e}"))
        };
        let rows = sqlx::query(s::SELECT_SCAN_EVENTS)
            .bind(lo)
            .bind(hi)
            .fetch_all($pool)
            .await
            .map_err($crate::common::db_err)?;
        scan.reset(from, u64::try_from(hi).unwrap_or(from));
        for row in &rows {
            let idx: i64 = row.try_get(0).map_err(|e| corrupt("index", e))?;
            let index = u64::try_from(idx).map_err(|_| {
                $crate::StoreError::Corrupt(format!("ledger scan: negative index {idx}"))
            })?;
            let schema: i32 = row.try_get(s::SCHEMA_COLUMN).unwrap_or(-1);
            // Text columns as their raw bytes: unchecked skips sqlx's type
            // check and UTF-8 validation, a third of the cost of a row here
            // (the bytes can only confirm, see LeafColumns).
            let text = |i: usize| row.try_get_unchecked::<&[u8], _>(i).ok();
            let opt_text = |i: usize| row.try_get_unchecked::<Option<&[u8]>, _>(i).ok();
            let time = row.try_get(s::TIME_COLUMN).ok();
            let columns = s::columns_of_row(index, text, opt_text, time);
            scan.push(index, i64::from(schema), columns);
        }
        let leaves: Vec<(i64, Vec<u8>)> = sqlx::query_as(s::SELECT_SCAN_LEAVES)
            .bind(lo)
            .bind(hi)
            .fetch_all($pool)
            .await
            .map_err($crate::common::db_err)?;
        for (idx, hash) in leaves {
            scan.recorded.push(s::recorded_leaf(idx, hash)?);
        }
        Ok(())
    }};
}

/// Implements [`crate::writer::WriteConn`] for `$conn` and [`crate::Store`]
/// for `$store` (which has fields `read: sqlx::Pool<_>` and `writer: Writer`).
/// `$begin` is the statement that opens a write transaction.
macro_rules! shared_impl {
    ($store:ty, $conn:ty, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::writer::WriteConn for $conn {
            async fn begin(&mut self) -> $crate::Result<()> {
                <Self as $crate::writer::WriteConn>::exec(self, $begin).await
            }

            async fn exec(&mut self, sql: &'static str) -> $crate::Result<()> {
                sqlx::query(sql)
                    .execute(&mut *self)
                    .await
                    .map(drop)
                    .map_err($crate::common::db_err)
            }

            async fn lock_head(&mut self) -> $crate::Result<u64> {
                let (next,): (i64,) = sqlx::query_as($crate::common::LOCK_HEAD)
                    .fetch_one(&mut *self)
                    .await
                    .map_err($crate::common::db_err)?;
                u64::try_from(next).map_err(|_| {
                    $crate::StoreError::Corrupt(format!("ledger head is negative ({next})"))
                })
            }

            async fn set_head(&mut self, next: u64) -> $crate::Result<()> {
                sqlx::query($crate::common::SET_HEAD)
                    .bind($crate::common::to_i64(next))
                    .execute(&mut *self)
                    .await
                    .map(drop)
                    .map_err($crate::common::db_err)
            }

            async fn apply(&mut self, change: &$crate::Change) -> $crate::Result<()> {
                use $crate::common::{self as c, RequestRow};
                use $crate::{Change, StoreError};
                match change {
                    Change::InsertRequest(r) => {
                        let row = RequestRow::new(r, r.version)?;
                        $crate::shared::bind_request_row!(sqlx::query(c::INSERT_REQUEST), row)
                            .execute(&mut *self)
                            .await
                            .map_err(|e| c::insert_request_err(e, r))?;
                    }
                    Change::UpdateRequest(r) => {
                        let version = r.version.checked_add(1).ok_or_else(|| {
                            StoreError::Database(format!("request {} version overflow", r.id))
                        })?;
                        let row = RequestRow::new(r, version)?;
                        let done =
                            $crate::shared::bind_request_row!(sqlx::query(c::UPDATE_REQUEST), row)
                                .bind(r.version)
                                .execute(&mut *self)
                                .await
                                .map_err(|e| c::insert_request_err(e, r))?;
                        if done.rows_affected() == 0 {
                            let exists = sqlx::query(c::REQUEST_EXISTS)
                                .bind(&r.id)
                                .fetch_optional(&mut *self)
                                .await
                                .map_err(c::db_err)?;
                            return Err(match exists {
                                Some(_) => StoreError::Conflict(r.id.clone()),
                                None => StoreError::NotFound(format!("request {}", r.id)),
                            });
                        }
                    }
                    Change::InsertPrincipal {
                        principal,
                        credential,
                        token_hash,
                        created_by,
                    } => {
                        let row = c::PrincipalRow::new(principal)?;
                        sqlx::query(c::INSERT_PRINCIPAL)
                            .bind(row.name)
                            .bind(row.kind)
                            .bind(row.role)
                            .bind(row.email)
                            .bind(row.groups)
                            .bind(row.owner)
                            .bind(row.created_at)
                            .bind(row.revoked_at)
                            .bind(created_by)
                            .bind(row.attributes)
                            .execute(&mut *self)
                            .await
                            .map_err(|e| c::insert_principal_err(e, &principal.name))?;
                        $crate::shared::insert_credential!(
                            &mut *self, credential, token_hash, created_by
                        );
                    }
                    Change::InsertCredential {
                        credential,
                        token_hash,
                        created_by,
                    } => {
                        $crate::shared::insert_credential!(
                            &mut *self, credential, token_hash, created_by
                        );
                    }
                    Change::RevokeCredential { id, at } => {
                        let done = sqlx::query(c::REVOKE_CREDENTIAL)
                            .bind(id)
                            .bind(c::millis(*at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                        if done.rows_affected() == 0 {
                            return Err(StoreError::NotFound(format!("credential {id}")));
                        }
                    }
                    Change::TouchCredentials(touched) => {
                        for (id, at) in touched {
                            sqlx::query(c::TOUCH_CREDENTIAL)
                                .bind(id)
                                .bind(c::millis(*at))
                                .execute(&mut *self)
                                .await
                                .map_err(c::db_err)?;
                        }
                    }
                    Change::LinkIdentity(identity) => {
                        sqlx::query(c::INSERT_IDENTITY)
                            .bind(&identity.issuer)
                            .bind(&identity.subject)
                            .bind(&identity.principal)
                            .bind(&identity.verified_by)
                            .bind(&identity.linked_by)
                            .bind(c::millis(identity.linked_at))
                            .execute(&mut *self)
                            .await
                            .map_err(|e| {
                                if c::is_unique_violation(&e) {
                                    StoreError::Duplicate(format!(
                                        "identity {} {}",
                                        identity.issuer, identity.subject
                                    ))
                                } else {
                                    c::db_err(e)
                                }
                            })?;
                    }
                    Change::AdvanceCursor {
                        name,
                        position,
                        holder,
                        at,
                    } => {
                        if let Some(holder) = holder {
                            let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                                "SELECT holder, lease_until FROM stream_cursors WHERE name = $1",
                            )
                            .bind(name)
                            .fetch_optional(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                            if let Some((Some(current), Some(until))) = row {
                                if &current != holder && until > c::millis(*at) {
                                    return Err(StoreError::Conflict(format!(
                                        "stream cursor {name} (leased by {current})"
                                    )));
                                }
                            }
                        }
                        sqlx::query(c::ADVANCE_CURSOR)
                            .bind(name)
                            .bind(c::to_i64(*position))
                            .bind(c::millis(*at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                    }
                    Change::LeaseCursor {
                        name,
                        holder,
                        start,
                        until,
                        at,
                    } => {
                        let done = sqlx::query(c::LEASE_CURSOR)
                            .bind(name)
                            .bind(holder)
                            .bind(c::to_i64(*start))
                            .bind(c::millis(*until))
                            .bind(c::millis(*at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                        if done.rows_affected() == 0 {
                            return Err(StoreError::Conflict(format!(
                                "stream cursor {name} (leased by another holder)"
                            )));
                        }
                    }
                    Change::ActivatePolicySet(set) => {
                        sqlx::query(c::INSERT_POLICY_SET)
                            .bind(&set.hash)
                            .bind(&set.files)
                            .bind(c::millis(set.activated_at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                        sqlx::query(c::SET_ACTIVE_POLICY)
                            .bind(&set.hash)
                            .bind(c::millis(set.activated_at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                    }
                    Change::SetPrincipalAttributes { name, attributes } => {
                        let json = serde_json::to_string(attributes).map_err(|e| {
                            StoreError::Database(format!(
                                "cannot serialize attributes of principal {name}: {e}"
                            ))
                        })?;
                        let done = sqlx::query(c::SET_PRINCIPAL_ATTRIBUTES)
                            .bind(name)
                            .bind(json)
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                        if done.rows_affected() == 0 {
                            return Err(StoreError::NotFound(format!("principal {name}")));
                        }
                    }
                    Change::RevokePrincipal { name, at } => {
                        let done = sqlx::query(c::REVOKE_PRINCIPAL)
                            .bind(name)
                            .bind(c::millis(*at))
                            .execute(&mut *self)
                            .await
                            .map_err(c::db_err)?;
                        if done.rows_affected() == 0 {
                            return Err(StoreError::NotFound(format!("principal {name}")));
                        }
                    }
                    Change::InsertCheckpoint(cp) => {
                        sqlx::query(c::INSERT_CHECKPOINT)
                            .bind(c::to_i64(cp.size))
                            .bind(cp.root.to_vec())
                            .bind(&cp.note)
                            .bind(c::millis(cp.created_at))
                            .execute(&mut *self)
                            .await
                            .map_err(|e| match c::db_err(e) {
                                StoreError::Database(m)
                                    if m.contains("unique")
                                        || m.contains("UNIQUE")
                                        || m.contains("duplicate") =>
                                {
                                    StoreError::Duplicate(format!("checkpoint of size {}", cp.size))
                                }
                                other => other,
                            })?;
                    }
                }
                Ok(())
            }

            async fn insert_requests(
                &mut self,
                records: &[&signoff_core::RequestRecord],
            ) -> $crate::Result<()> {
                use $crate::common as c;
                let mut rest = records;
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
                    let mut query = sqlx::query(c::insert_requests_sql(chunk.len()));
                    for r in chunk {
                        let row = c::RequestRow::new(r, r.version)?;
                        query = $crate::shared::bind_request_row!(query, row);
                    }
                    query.execute(&mut *self).await.map_err(c::db_err)?;
                    rest = tail;
                }
                Ok(())
            }

            async fn append(
                &mut self,
                first: u64,
                events: &[&$crate::common::StagedEvent],
            ) -> $crate::Result<()> {
                use $crate::common as c;
                let mut idx = first;
                let mut rest = events;
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
                    let mut query = sqlx::query(c::insert_events_sql(chunk.len()));
                    for event in chunk {
                        let at = c::EventRow::idx_for(idx)?;
                        idx += 1;
                        let row = &event.row;
                        query = query
                            .bind(at)
                            .bind(&row.kind)
                            .bind(row.time)
                            .bind(&row.actor)
                            .bind(&row.request_id)
                            .bind(&row.digest)
                            .bind(&row.verdict)
                            .bind(&row.policy_ids)
                            .bind(&row.policy_set_hash)
                            .bind(&row.reason)
                            .bind(&row.detail)
                            .bind(row.schema);
                    }
                    query.execute(&mut *self).await.map_err(c::db_err)?;
                    rest = tail;
                }
                Ok(())
            }

            async fn nodes(&mut self, coords: &[(u32, u64)]) -> $crate::Result<Vec<[u8; 32]>> {
                $crate::shared::fetch_nodes!(&mut *self, coords)
            }

            async fn append_nodes(&mut self, nodes: &[(u32, u64, [u8; 32])]) -> $crate::Result<()> {
                use $crate::common as c;
                let mut rest = nodes;
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
                    let mut query = sqlx::query(c::insert_nodes_sql(chunk.len()));
                    for (level, idx, hash) in chunk {
                        query = query
                            .bind(i64::from(*level))
                            .bind(c::to_i64(*idx))
                            .bind(hash.to_vec());
                    }
                    query.execute(&mut *self).await.map_err(c::db_err)?;
                    rest = tail;
                }
                Ok(())
            }

            async fn close(self) {
                let _ = sqlx::Connection::close(self).await;
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn commit(&self, commit: $crate::Commit) -> $crate::Result<$crate::Receipt> {
                if commit.changes.is_empty() && commit.events.is_empty() {
                    return Ok($crate::Receipt {
                        event_indexes: Vec::new(),
                    });
                }
                let receipt = self.writer.commit(commit).await?;
                if let Some(last) = receipt.event_indexes.last() {
                    $crate::common::bump_head(&self.head, last + 1);
                }
                Ok(receipt)
            }

            async fn request(
                &self,
                id: &str,
            ) -> $crate::Result<Option<signoff_core::RequestRecord>> {
                if let Some(found) = $crate::shared::InlineReads::by_id(self, id) {
                    return found.map(|body| {
                        body.map(|b| $crate::common::decode_request(&b)).transpose()
                    })?;
                }
                let row: Option<(String,)> = sqlx::query_as($crate::common::SELECT_REQUEST)
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                row.map(|(body,)| $crate::common::decode_request(&body))
                    .transpose()
            }

            async fn request_by_idempotency_key(
                &self,
                principal: &str,
                key: &str,
            ) -> $crate::Result<Option<signoff_core::RequestRecord>> {
                if let Some(found) = $crate::shared::InlineReads::by_key(self, principal, key) {
                    return found.map(|body| {
                        body.map(|b| $crate::common::decode_request(&b)).transpose()
                    })?;
                }
                let row: Option<(String,)> = sqlx::query_as($crate::common::SELECT_REQUEST_BY_KEY)
                    .bind(principal)
                    .bind(key)
                    .fetch_optional(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                row.map(|(body,)| $crate::common::decode_request(&body))
                    .transpose()
            }

            async fn list_requests(
                &self,
                filter: &$crate::RequestFilter,
            ) -> $crate::Result<Vec<signoff_core::RequestRecord>> {
                use $crate::common::Param;
                let (sql, params) = $crate::common::list_requests_sql(filter);
                let mut query = sqlx::query_as::<_, (String,)>(&sql);
                for p in params {
                    query = match p {
                        Param::Text(s) => query.bind(s),
                        Param::Int(i) => query.bind(i),
                    };
                }
                let rows = query
                    .fetch_all(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                rows.iter()
                    .map(|(body,)| $crate::common::decode_request(body))
                    .collect()
            }

            async fn due_requests(
                &self,
                now: jiff::Timestamp,
                limit: usize,
            ) -> $crate::Result<Vec<signoff_core::RequestRecord>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<(String,)> = sqlx::query_as($crate::common::SELECT_DUE)
                    .bind($crate::common::millis(now))
                    .bind($crate::common::to_i64(
                        limit.min($crate::common::MAX_EVENTS),
                    ))
                    .fetch_all(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                rows.iter()
                    .map(|(body,)| $crate::common::decode_request(body))
                    .collect()
            }

            async fn deadlines(
                &self,
                until: jiff::Timestamp,
                limit: usize,
            ) -> $crate::Result<Vec<(String, jiff::Timestamp)>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<(String, i64)> = sqlx::query_as($crate::common::SELECT_DEADLINES)
                    .bind($crate::common::millis(until))
                    .bind($crate::common::to_i64(
                        limit.min($crate::common::MAX_EVENTS),
                    ))
                    .fetch_all(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                rows.into_iter()
                    .map(|(id, ms)| {
                        let at = $crate::common::timestamp(ms, &|| format!("deadline of {id}"))?;
                        Ok((id, at))
                    })
                    .collect()
            }

            async fn provenance(
                &self,
                principal: &str,
                credential: Option<&str>,
            ) -> $crate::Result<$crate::Provenance> {
                let account: Option<(Option<String>,)> =
                    sqlx::query_as($crate::common::SELECT_PRINCIPAL_CREATOR)
                        .bind(principal)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                let issued: Option<(Option<String>,)> = match credential {
                    None => None,
                    Some(id) => sqlx::query_as($crate::common::SELECT_CREDENTIAL_CREATOR)
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?,
                };
                Ok($crate::Provenance {
                    account_created_by: account.and_then(|(by,)| by),
                    credential_created_by: issued.and_then(|(by,)| by),
                })
            }

            async fn next_deadline(&self) -> $crate::Result<Option<jiff::Timestamp>> {
                let (ms,): (Option<i64>,) = sqlx::query_as($crate::common::SELECT_NEXT_DEADLINE)
                    .fetch_one(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                ms.map(|ms| $crate::common::timestamp(ms, &|| "next deadline".to_owned()))
                    .transpose()
            }

            async fn count_by_status(
                &self,
            ) -> $crate::Result<Vec<(signoff_core::RequestStatus, u64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as($crate::common::COUNT_BY_STATUS)
                    .fetch_all(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                $crate::common::decode_counts(rows)
            }

            async fn credential_by_token_hash(
                &self,
                token_hash: &str,
            ) -> $crate::Result<Option<(signoff_core::Principal, signoff_core::Credential)>> {
                let row: Option<$crate::common::PrincipalCredentialRow> =
                    sqlx::query_as($crate::common::SELECT_CREDENTIAL_BY_TOKEN)
                        .bind(token_hash)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                row.map($crate::common::PrincipalCredentialRow::decode)
                    .transpose()
            }

            async fn credentials(
                &self,
                principal: &str,
            ) -> $crate::Result<Vec<signoff_core::Credential>> {
                let rows: Vec<$crate::common::CredentialRow> =
                    sqlx::query_as($crate::common::SELECT_CREDENTIALS)
                        .bind(principal)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                rows.into_iter()
                    .map($crate::common::decode_credential)
                    .collect()
            }

            async fn identity(
                &self,
                issuer: &str,
                subject: &str,
            ) -> $crate::Result<Option<signoff_core::Identity>> {
                let row: Option<$crate::common::IdentityRow> =
                    sqlx::query_as($crate::common::SELECT_IDENTITY)
                        .bind(issuer)
                        .bind(subject)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                row.map($crate::common::decode_identity).transpose()
            }

            async fn identities(
                &self,
                principal: &str,
            ) -> $crate::Result<Vec<signoff_core::Identity>> {
                let rows: Vec<$crate::common::IdentityRow> =
                    sqlx::query_as($crate::common::SELECT_IDENTITIES)
                        .bind(principal)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                rows.into_iter()
                    .map($crate::common::decode_identity)
                    .collect()
            }

            async fn cursor(&self, name: &str) -> $crate::Result<Option<$crate::CursorState>> {
                use $crate::common as c;
                let row: Option<(i64, Option<String>, Option<i64>)> =
                    sqlx::query_as(c::SELECT_CURSOR)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(c::db_err)?;
                row.map(|(position, holder, lease_until)| {
                    let what = || format!("stream cursor {name}");
                    Ok($crate::CursorState {
                        position: u64::try_from(position).map_err(|_| {
                            $crate::StoreError::Corrupt(format!("{}: negative position", what()))
                        })?,
                        holder,
                        lease_until: lease_until.map(|ms| c::timestamp(ms, &what)).transpose()?,
                    })
                })
                .transpose()
            }

            async fn active_policy_set(&self) -> $crate::Result<Option<$crate::StoredPolicySet>> {
                use $crate::common as c;
                let row: Option<(String, String, i64)> = sqlx::query_as(c::SELECT_ACTIVE_POLICY)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(c::db_err)?;
                row.map(|(hash, files, at)| {
                    Ok($crate::StoredPolicySet {
                        activated_at: c::timestamp(at, &|| "active policy set".to_owned())?,
                        hash,
                        files,
                    })
                })
                .transpose()
            }

            async fn active_policy_hash(&self) -> $crate::Result<Option<String>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT hash FROM policy_active WHERE id = 1")
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                Ok(row.map(|(h,)| h))
            }

            fn is_shared(&self) -> bool {
                Self::SHARED
            }

            fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64> {
                self.head.subscribe()
            }

            async fn principal(
                &self,
                name: &str,
            ) -> $crate::Result<Option<signoff_core::Principal>> {
                let row: Option<$crate::common::PrincipalRow> =
                    sqlx::query_as($crate::common::SELECT_PRINCIPAL)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                row.map($crate::common::PrincipalRow::decode).transpose()
            }

            async fn list_principals(&self) -> $crate::Result<Vec<signoff_core::Principal>> {
                let rows: Vec<$crate::common::PrincipalRow> =
                    sqlx::query_as($crate::common::LIST_PRINCIPALS)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                rows.into_iter()
                    .map($crate::common::PrincipalRow::decode)
                    .collect()
            }

            async fn events(
                &self,
                from: u64,
                limit: usize,
            ) -> $crate::Result<Vec<signoff_core::AuditEvent>> {
                let Ok(from) = i64::try_from(from) else {
                    return Ok(Vec::new());
                };
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<$crate::common::EventRow> =
                    sqlx::query_as($crate::common::SELECT_EVENTS)
                        .bind(from)
                        .bind($crate::common::to_i64(
                            limit.min($crate::common::MAX_EVENTS),
                        ))
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::common::db_err)?;
                rows.into_iter()
                    .map($crate::common::EventRow::decode)
                    .collect()
            }

            async fn event_count(&self) -> $crate::Result<u64> {
                let (next,): (i64,) = sqlx::query_as($crate::common::SELECT_HEAD)
                    .fetch_one(&self.read)
                    .await
                    .map_err($crate::common::db_err)?;
                u64::try_from(next).map_err(|_| {
                    $crate::StoreError::Corrupt(format!("ledger head is negative ({next})"))
                })
            }

            async fn event_range(
                &self,
                since: jiff::Timestamp,
                until: jiff::Timestamp,
            ) -> $crate::Result<Option<(u64, u64)>> {
                use $crate::common as c;
                let (first, last): (Option<i64>, Option<i64>) =
                    sqlx::query_as(c::SELECT_EVENT_RANGE)
                        .bind(c::millis(since))
                        .bind(c::millis(until))
                        .fetch_one(&self.read)
                        .await
                        .map_err(c::db_err)?;
                Ok(match (first, last) {
                    (Some(f), Some(l)) if f <= l => {
                        u64::try_from(f).ok().zip(u64::try_from(l).ok())
                    }
                    _ => None,
                })
            }

            async fn ledger_leaves(
                &self,
                from: u64,
                limit: usize,
            ) -> $crate::Result<Vec<(u64, [u8; 32])>> {
                use $crate::common as c;
                let Ok(from) = i64::try_from(from) else {
                    return Ok(Vec::new());
                };
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(c::SELECT_LEAVES)
                    .bind(from)
                    .bind(c::to_i64(limit.min(c::MAX_EVENTS)))
                    .fetch_all(&self.read)
                    .await
                    .map_err(c::db_err)?;
                rows.into_iter()
                    .map(|(idx, hash)| $crate::scan::recorded_leaf(idx, hash))
                    .collect()
            }

            async fn ledger_nodes(&self, coords: &[(u32, u64)]) -> $crate::Result<Vec<[u8; 32]>> {
                self.read_nodes(coords).await
            }

            async fn checkpoints(
                &self,
                from_size: u64,
                limit: usize,
            ) -> $crate::Result<Vec<$crate::StoredCheckpoint>> {
                use $crate::common as c;
                let rows: Vec<(i64, Vec<u8>, String, i64)> = sqlx::query_as(c::SELECT_CHECKPOINTS)
                    .bind(c::to_i64(from_size))
                    .bind(c::to_i64(limit.clamp(1, c::MAX_EVENTS)))
                    .fetch_all(&self.read)
                    .await
                    .map_err(c::db_err)?;
                rows.into_iter().map(c::decode_checkpoint).collect()
            }

            async fn latest_checkpoint(&self) -> $crate::Result<Option<$crate::StoredCheckpoint>> {
                use $crate::common as c;
                let row: Option<(i64, Vec<u8>, String, i64)> =
                    sqlx::query_as(c::SELECT_LATEST_CHECKPOINT)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(c::db_err)?;
                row.map(c::decode_checkpoint).transpose()
            }

            async fn scan_ledger(
                &self,
                from: u64,
                to: u64,
                into: &mut $crate::LedgerScan,
            ) -> $crate::Result<()> {
                self.scan(from, to, into).await
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.read)
                    .await
                    .map(drop)
                    .map_err($crate::common::db_err)
            }
        }
    };
}
/// Inserts a credential row through `$exec`, mapping unique violations.
macro_rules! insert_credential {
    ($exec:expr, $credential:expr, $token_hash:expr, $created_by:expr) => {{
        use $crate::common as c;
        let cr: &signoff_core::Credential = $credential;
        sqlx::query(c::INSERT_CREDENTIAL)
            .bind(&cr.id)
            .bind(&cr.principal)
            .bind(&cr.name)
            .bind($token_hash)
            .bind(&cr.gate)
            .bind(c::millis(cr.created_at))
            .bind(cr.expires_at.map(c::millis))
            .bind(cr.revoked_at.map(c::millis))
            .bind(cr.last_used_at.map(c::millis))
            .bind($created_by)
            .execute($exec)
            .await
            .map_err(|e| {
                if c::is_unique_violation(&e) {
                    $crate::StoreError::Duplicate(format!(
                        "credential `{}` of principal {}",
                        cr.name, cr.principal
                    ))
                } else {
                    c::db_err(e)
                }
            })?;
    }};
}

pub(crate) use {bind_request_row, fetch_nodes, insert_credential, shared_impl, sqlx_scan};

/// Reads a backend may answer on the calling thread, before the shared
/// sqlx path is tried: `None` means "not answered here".
pub(crate) trait InlineReads {
    /// The body of the request `principal` submitted with `key` (looked up
    /// before every submission that carries an Idempotency-Key).
    fn by_key(&self, _principal: &str, _key: &str) -> Option<crate::Result<Option<String>>> {
        None
    }

    /// The body of request `id` (read before every review, claim, outcome
    /// and long-poll answer).
    fn by_id(&self, _id: &str) -> Option<crate::Result<Option<String>>> {
        None
    }
}

impl InlineReads for crate::postgres::PgStore {}
