use std::time::Duration;

use super::*;

fn conn(n: u64) -> ConnectionId {
    ConnectionId {
        pid: 1,
        conn_ptr: n,
        first_seen_ns: 0,
    }
}

#[test]
fn a_truncated_chunk_becomes_bytes_then_a_gap() {
    let data = [1u8, 2, 3];
    assert_eq!(
        pieces(&data, 10).collect::<Vec<_>>(),
        vec![Piece::Bytes(&data), Piece::Gap(7)]
    );
    assert_eq!(
        pieces(&data, 3).collect::<Vec<_>>(),
        vec![Piece::Bytes(&data)]
    );
    assert_eq!(pieces(&[], 5).collect::<Vec<_>>(), vec![Piece::Gap(5)]);
    assert_eq!(pieces(&[], 0).count(), 0);
    // A length smaller than the copy (corrupt metadata) is not a negative gap.
    assert_eq!(
        pieces(&data, 1).collect::<Vec<_>>(),
        vec![Piece::Bytes(&data)]
    );
}

#[test]
fn the_table_stays_bounded_by_evicting_the_least_recently_active() {
    let metrics = ReassemblyMetrics::default();
    let mut r = ConnectionTable::<()>::new(ReassemblyConfig {
        max_connections: 2,
        ..ReassemblyConfig::default()
    });
    assert!(
        r.observe(conn(1), Some(Direction::Ingress), 10, &metrics)
            .is_empty()
    );
    assert!(
        r.observe(conn(2), Some(Direction::Ingress), 20, &metrics)
            .is_empty()
    );
    assert!(
        r.observe(conn(1), Some(Direction::Egress), 30, &metrics)
            .is_empty()
    );
    let evicted = r.observe(conn(3), Some(Direction::Ingress), 40, &metrics);
    assert_eq!(
        reasons(evicted),
        vec![(conn(2), Eviction::TooManyConnections)]
    );
    assert_eq!(r.connections(), 2);
    assert_eq!(metrics.evicted_too_many.get(), 1);
}

#[test]
fn time_running_backwards_within_a_direction_is_counted() {
    let metrics = ReassemblyMetrics::default();
    let mut r = ConnectionTable::<()>::new(ReassemblyConfig::default());
    r.observe(conn(1), Some(Direction::Ingress), 100, &metrics);
    r.observe(conn(1), Some(Direction::Egress), 50, &metrics);
    assert_eq!(metrics.out_of_order.get(), 0, "directions are independent");
    r.observe(conn(1), Some(Direction::Ingress), 99, &metrics);
    assert_eq!(metrics.out_of_order.get(), 1);
}

#[test]
fn idle_connections_are_evicted_after_the_timeout() {
    let metrics = ReassemblyMetrics::default();
    let mut r = ConnectionTable::<()>::new(ReassemblyConfig {
        idle_timeout: Duration::from_secs(1),
        ..ReassemblyConfig::default()
    });
    r.observe(conn(1), None, 0, &metrics);
    r.observe(conn(2), None, 900_000_000, &metrics);
    assert!(r.evict_idle(1_000_000_000, &metrics).is_empty());
    assert_eq!(
        reasons(r.evict_idle(1_500_000_000, &metrics)),
        vec![(conn(1), Eviction::Idle)]
    );
    assert_eq!(r.connections(), 1);
    assert_eq!(metrics.evicted_idle.get(), 1);
}

#[test]
fn memory_budgets_evict_the_heaviest_connections() {
    let metrics = ReassemblyMetrics::default();
    let mut r = ConnectionTable::<()>::new(ReassemblyConfig {
        max_buffered_bytes_per_connection: 100,
        max_buffered_bytes_total: 150,
        ..ReassemblyConfig::default()
    });
    for n in 1..=3 {
        r.observe(conn(n), None, n, &metrics);
    }
    assert_eq!(
        reasons(r.account(conn(1), 101, &metrics)),
        vec![(conn(1), Eviction::OverMemoryBudget)]
    );
    assert!(r.account(conn(2), 80, &metrics).is_empty());
    assert_eq!(r.buffered_total(), 80);
    assert_eq!(
        reasons(r.account(conn(3), 90, &metrics)),
        vec![(conn(3), Eviction::OverMemoryBudget)]
    );
    assert_eq!(r.buffered_total(), 80);
    r.close(&conn(2));
    assert_eq!(r.buffered_total(), 0);
    assert_eq!(metrics.evicted_memory.get(), 2);
}

fn reasons(evicted: Vec<Evicted<()>>) -> Vec<(ConnectionId, Eviction)> {
    evicted
        .into_iter()
        .map(|e| (e.connection, e.reason))
        .collect()
}

#[test]
fn later_stages_state_lives_in_the_table_and_leaves_with_its_connection() {
    let metrics = ReassemblyMetrics::default();
    let mut table = ConnectionTable::<&str>::new(ReassemblyConfig {
        max_connections: 1,
        ..ReassemblyConfig::default()
    });
    // Not observed yet: no state can be made for it.
    assert!(table.state_or_insert_with(&conn(1), || "one").is_none());
    table.observe(conn(1), None, 1, &metrics);
    assert_eq!(
        table.state_or_insert_with(&conn(1), || "one"),
        Some(&mut "one")
    );
    assert_eq!(
        table.state_or_insert_with(&conn(1), || "again"),
        Some(&mut "one")
    );
    assert_eq!(table.states().count(), 1);
    // Over the count bound, the evicted connection comes back with its state.
    let evicted = table.observe(conn(2), None, 2, &metrics);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].state, Some("one"));
    assert!(table.state_or_insert_with(&conn(1), || "one").is_none());
    table.state_or_insert_with(&conn(2), || "two");
    assert_eq!(table.close(&conn(2)), Some("two"));
    assert_eq!(table.connections(), 0);
}
