//! `palisade consumers`: the durable consumers of the configured event store,
//! with their checkpoint, lease and lag.

use palisade::Stores;
use palisade_core::consumers::ConsumerInfo;
use palisade_core::events::Cursor;
use palisade_core::EventStoreExt;
use serde::Serialize;

/// Lag is counted up to this many events (one read); more shows as `10000+`.
pub const LAG_CAP: usize = 10_000;

/// Arguments of `palisade consumers`.
#[derive(clap::Args, Debug)]
pub struct ConsumersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Delete consumer NAME (checkpoint, filter, lease) instead of listing;
    /// a running holder loses its lease.
    #[arg(long, value_name = "NAME")]
    pub delete: Option<String>,
}

/// One listed consumer.
#[derive(Debug, Serialize)]
pub struct Row {
    #[serde(flatten)]
    info: ConsumerInfo,
    /// Events in the log after the checkpoint, up to [`LAG_CAP`].
    lag: u64,
    /// Whether the lag reached the cap (it may be larger).
    lag_capped: bool,
}

/// Lists (or deletes) the consumers of the configured event store.
pub async fn run(stores: &Stores, args: &ConsumersArgs) -> palisade::Result<String> {
    if let Some(name) = &args.delete {
        let existed = stores.events.delete_consumer(name).await?;
        return Ok(if existed { format!("deleted consumer {name}\n") } else { format!("no consumer {name}\n") });
    }
    let mut rows = Vec::new();
    for info in stores.events.consumers().await? {
        let lag = stores.events.consumer_lag(&info, LAG_CAP).await?;
        rows.push(Row { info, lag, lag_capped: lag >= LAG_CAP as u64 });
    }
    if args.json {
        return Ok(serde_json::to_string_pretty(&rows).map_err(palisade::Error::from)? + "\n");
    }
    let mut out = format!("{:<32} {:<24} {:>8}  {:<25} filter\n", "consumer", "checkpoint", "lag", "lease until");
    for r in &rows {
        let checkpoint = match r.info.checkpoint {
            Cursor::Start => "start".to_owned(),
            Cursor::After(p) => p.to_string(),
        };
        let lag = if r.lag_capped { format!("{}+", r.lag) } else { r.lag.to_string() };
        let lease = r.info.lease_expires_at.map_or_else(|| "free".to_owned(), |t| t.to_rfc3339());
        let filter = serde_json::to_string(&r.info.filter).map_err(palisade::Error::from)?;
        out.push_str(&format!("{:<32} {:<24} {:>8}  {:<25} {filter}\n", r.info.name, checkpoint, lag, lease));
    }
    if rows.is_empty() {
        out.push_str("(no consumers)\n");
    }
    Ok(out)
}
