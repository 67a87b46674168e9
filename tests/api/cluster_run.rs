//! The cluster under fire (issue "hms-sync as a cluster", its test): three instances as child
//! processes on one PostgreSQL database, events over HTTP to the instances in turn and over
//! NATS JetStream, a target failing one request in ten, one instance killed with -9 mid-run
//! and started again. `HMS_SYNC_CLUSTER_EVENTS` sets how many events (3,000 in the suite;
//! the closing note's run used 20,000).

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::*;

/// A pulling connector on the sink's change feed, every second (its readers are counted).
fn feed_connector(base: &str) -> String {
    format!(
        "id: feed\ntype: inbound\nkey: \"{{{{ id }}}}\"\nmap:\n  hms: {{ url: \"{base}/hms/{{{{ id }}}}\", method: PATCH }}\nsource:\n  pull: {{ url: \"{base}/feed?since={{{{ cursor }}}}\", every: 1s, records: \"$.changes\", idField: id, cursorField: v, initialCursor: 0 }}\n"
    )
}

#[actix_web::test]
async fn three_instances_lose_nothing_through_a_kill() {
    let Some(nats) = crate::nats::nats_url() else { return };
    let Some((admin, url, name)) = crate::cluster::fresh_pg("chaos").await else { return };
    let events: u64 = std::env::var("HMS_SYNC_CLUSTER_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let sink = KeyedSink::start().await;
    let nats_settings = crate::nats::with_nats(test_settings(&temp_dir("chaos-nats")), &nats, "chaos");
    let n = &nats_settings.bus.nats;
    let env: Vec<(&str, String)> = vec![
        ("HMS_SYNC__DATABASE__URL", url.clone()),
        ("HMS_SYNC__CLUSTER__LEASE_SECS", "2".into()),
        ("HMS_SYNC__BUS__NATS__URL", nats.clone()),
        ("HMS_SYNC__BUS__NATS__STREAM", n.stream.clone()),
        ("HMS_SYNC__BUS__NATS__SUBJECTS", n.subjects.clone()),
        ("HMS_SYNC__BUS__NATS__PREFIX", n.prefix.clone()),
        ("HMS_SYNC__BUS__NATS__ACK_WAIT_SECS", "2".into()),
        ("HMS_SYNC__LOG__LEVEL", "warn".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dirs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let dir = temp_dir(&format!("chaos-{i}"));
            std::fs::write(dir.join("connectors/shared.yaml"), keyed_connector(&sink.base)).unwrap();
            std::fs::write(dir.join("connectors/feed.yaml"), feed_connector(&sink.base)).unwrap();
            dir
        })
        .collect();
    let mut instances = Vec::new();
    for dir in &dirs {
        instances.push(Some(Service::up(dir, &env, Stdio::null()).await));
    }
    poll_until("one instance to take from NATS", WAIT, || async {
        for s in instances.iter().flatten() {
            if s.call("GET", "/cluster", None).await.1["nats"]["taking"] == true {
                return Some(());
            }
        }
        None
    })
    .await;
    // Keys: `n*` over NATS, `h*` over HTTP (each source's order is its own).
    let mut turn = 0usize;
    for seq in 0..events {
        if seq == events / 3 {
            instances[1].as_mut().unwrap().kill9();
            instances[1] = None;
        }
        if seq == 2 * events / 3 {
            instances[1] = Some(Service::up(&dirs[1], &env, Stdio::null()).await);
        }
        if seq % 2 == 0 {
            let body = serde_json::json!({ "key": format!("n{}", seq % 16), "seq": seq.to_string() });
            hms_sync::actors::nats::publish(&nats, &n.prefix, "cluster.test", body.to_string().into_bytes(), None).await.unwrap();
        } else {
            let body = serde_json::json!({ "key": format!("h{}", seq % 16), "seq": seq.to_string() }).to_string();
            let alive: Vec<&Service> = instances.iter().flatten().collect();
            turn += 1;
            let (code, answer) = alive[turn % alive.len()].call("POST", "/events/cluster.test", Some(&body)).await;
            assert_eq!(code, 202, "{answer}");
        }
    }
    poll_until("every event delivered", Duration::from_secs(180), || async {
        let log = sink.log.lock().unwrap();
        let distinct: std::collections::HashSet<u64> = log.delivered.values().flatten().copied().collect();
        (distinct.len() as u64 >= events).then_some(())
    })
    .await;
    {
        let log = sink.log.lock().unwrap();
        assert!(log.overlapped.is_empty(), "two requests of one key in flight at once: {:?}", log.overlapped);
        for (key, seqs) in &log.delivered {
            assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "key {key}: accepted in order, delivered out of order: {seqs:?}");
            let mut got = seqs.clone();
            got.dedup();
            let source = if key.starts_with('n') { 0 } else { 1 };
            let k: u64 = key[1..].parse().unwrap();
            let want: Vec<u64> = (0..events).filter(|s| s % 2 == source && s % 16 == k).collect();
            assert_eq!(got, want, "key {key}: every acknowledged event delivered");
        }
        assert!(log.max_readers <= 1, "the feed had {} readers at once", log.max_readers);
        assert!(log.reads > 0, "the feed was pulled");
    }
    // One job per event, one ticket per completed job, and the chain holds. The target's
    // answer comes before the outcome's commit: the last outcomes may still be on their way.
    let done_sql = "SELECT count(*) FROM deliveries WHERE connector_id = 'shared' AND status = 'done'";
    poll_until("every job settled", Duration::from_secs(60), || async { (crate::cluster::count(&url, done_sql).await >= events as i64).then_some(()) }).await;
    let jobs = crate::cluster::count(&url, "SELECT count(*) FROM deliveries WHERE connector_id = 'shared'").await;
    let done = crate::cluster::count(&url, done_sql).await;
    let tickets = crate::cluster::count(&url, "SELECT count(*) FROM sync_tickets WHERE connector_id = 'shared' AND status = 'completed'").await;
    let ticketed = crate::cluster::count(&url, "SELECT count(DISTINCT delivery_id) FROM sync_tickets WHERE connector_id = 'shared' AND status = 'completed'").await;
    assert_eq!((jobs, done, tickets, ticketed), (events as i64, events as i64, events as i64, events as i64), "jobs, done, tickets, ticketed jobs");
    let (_, chain) = instances[0].as_ref().unwrap().call("GET", "/tickets/verify", None).await;
    assert_eq!(chain["ok"], true, "{chain}");
    drop(instances);
    crate::nats::drop_stream(&nats_settings).await;
    crate::cluster::drop_pg(&admin, &name).await;
}
