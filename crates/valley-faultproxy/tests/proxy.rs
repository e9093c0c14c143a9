//! The proxy end to end, in-process, over real sockets on 127.0.0.1.
//!
//! Timing assertions are one-sided floors with generous ceilings: a delay the proxy adds can
//! be measured as at least its configured value, never as exactly it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use valley_faultproxy::limits::SEGMENT_BYTES;
use valley_faultproxy::{Config, FaultProxy, Faults, ProxyError};

/// Ceiling on anything a test waits for: far above what any should take.
const PATIENCE: Duration = Duration::from_secs(20);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    data
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// A server that echoes every connection back until EOF.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A server that reads its first connection to the end (EOF or error) and reports what it
/// got and when it finished.
async fn sink_server() -> (SocketAddr, oneshot::Receiver<(Vec<u8>, Instant)>) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (data, _) = read_to_close(&mut stream).await;
        let _ = tx.send((data, Instant::now()));
    });
    (addr, rx)
}

/// Reads until EOF or an error, returning the bytes and the error if there was one.
async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (data, None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return (data, Some(e)),
        }
    }
}

async fn proxy_to(target: SocketAddr, seed: u64, faults: Faults) -> FaultProxy {
    let config = Config {
        seed,
        faults,
        ..Config::new(loopback(), target)
    };
    FaultProxy::start(config).await.unwrap()
}

/// Sends one byte and waits for its echo; true if it came back.
async fn round_trip(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"x").await.is_err() {
        return false;
    }
    let mut one = [0u8; 1];
    matches!(tokio::time::timeout(PATIENCE, stream.read(&mut one)).await, Ok(Ok(1)))
}

/// Sends `data` through a fresh connection to a sink behind a proxy with `seed` and `faults`;
/// returns what the sink received.
async fn through_sink(data: &[u8], seed: u64, faults: Faults) -> (Vec<u8>, FaultProxy) {
    let (sink, received) = sink_server().await;
    let proxy = proxy_to(sink, seed, faults).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.write_all(data).await.unwrap();
    client.shutdown().await.unwrap();
    let (got, _) = tokio::time::timeout(PATIENCE, received).await.unwrap().unwrap();
    (got, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pass_unchanged_without_faults() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo, 1, Faults::default()).await;
    let data = payload(16 * 1024 * 1024, 1);
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(PATIENCE, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert_eq!(sha(&back), sha(&data));
    let stats = proxy.stats();
    assert_eq!(stats.bytes_upstream, data.len() as u64);
    assert_eq!(stats.bytes_downstream, data.len() as u64);
    assert_eq!((stats.corruptions, stats.stalls, stats.cuts), (0, 0, 0));
    assert_eq!(stats.connections_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_at_least_its_delay_to_each_round_trip() {
    let echo = echo_server().await;
    let proxy = proxy_to(
        echo,
        2,
        Faults {
            latency_ms: 100,
            ..Faults::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(round_trip(&mut stream).await);
        let rtt = started.elapsed();
        // 100 ms each way.
        assert!(rtt >= Duration::from_millis(200), "round trip took {rtt:?}");
        assert!(rtt < PATIENCE, "round trip took {rtt:?}");
    }
    // Changed mid-run, the new latency applies to the same connection.
    proxy
        .set(Faults {
            latency_ms: 250,
            ..Faults::default()
        })
        .unwrap();
    let started = Instant::now();
    assert!(round_trip(&mut stream).await);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_cap_bounds_throughput() {
    let rate = 1024 * 1024;
    let data = payload(1024 * 1024, 3);
    let (sink, received) = sink_server().await;
    let proxy = proxy_to(
        sink,
        3,
        Faults {
            bandwidth_bytes_per_sec: rate,
            ..Faults::default()
        },
    )
    .await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let started = Instant::now();
    client.write_all(&data).await.unwrap();
    client.shutdown().await.unwrap();
    let (got, finished) = tokio::time::timeout(PATIENCE, received).await.unwrap().unwrap();
    let took = finished - started;
    assert_eq!(sha(&got), sha(&data));
    // 1 MiB at 1 MiB/s, less one 50 ms burst: about 0.95 s.
    assert!(took >= Duration::from_millis(800), "1 MiB at 1 MiB/s took {took:?}");
    assert!(took < Duration::from_secs(10), "1 MiB at 1 MiB/s took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_connections_share_the_bandwidth_cap() {
    // The cap is the link's: four connections of 256 KiB each through a 1 MiB/s link take as
    // long as one connection of 1 MiB, not a quarter of it.
    let rate = 1024 * 1024;
    let target = echo_server().await;
    let proxy = proxy_to(
        target,
        4,
        Faults {
            bandwidth_bytes_per_sec: rate,
            ..Faults::default()
        },
    )
    .await;
    let started = Instant::now();
    let sends = (0..4u64).map(|i| {
        let addr = proxy.local_addr();
        tokio::spawn(async move {
            let data = payload(256 * 1024, 10 + i);
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut r, mut w) = client.split();
            let (_, (echoed, _)) = tokio::join!(
                async {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                },
                async {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).await.unwrap();
                    (got, ())
                }
            );
            assert_eq!(sha(&echoed), sha(&data));
        })
    });
    for send in sends {
        tokio::time::timeout(PATIENCE, send).await.unwrap().unwrap();
    }
    let took = started.elapsed();
    // 1 MiB each way at 1 MiB/s per direction, less the bursts: about 0.9 s or more.
    assert!(
        took >= Duration::from_millis(750),
        "4 x 256 KiB through a shared 1 MiB/s cap took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_changes_bytes() {
    // Whole segments: a partial last one is flipped only if its drawn bit falls within it.
    let segments = 45u32;
    let data = payload(segments as usize * SEGMENT_BYTES as usize, 4);
    let (got, proxy) = through_sink(
        &data,
        4,
        Faults {
            corrupt_probability: 1.0,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(got.len(), data.len());
    assert_ne!(sha(&got), sha(&data));
    // One bit per segment.
    let flipped: u32 = got.iter().zip(&data).map(|(a, b)| (a ^ b).count_ones()).sum();
    assert_eq!(flipped, segments);
    assert_eq!(proxy.stats().corruptions, u64::from(segments));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_replays_the_same_faults_end_to_end() {
    let data = payload(512 * 1024, 5);
    let faults = Faults {
        corrupt_probability: 0.05,
        ..Faults::default()
    };
    let (a, _) = through_sink(&data, 77, faults).await;
    let (b, _) = through_sink(&data, 77, faults).await;
    let (c, _) = through_sink(&data, 78, faults).await;
    assert_ne!(a, data);
    assert_eq!(a, b, "same seed, same flipped bits, however the reads were chunked");
    assert_ne!(a, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_refuses_and_heal_restores() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo, 6, Faults::default()).await;
    let mut before = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut before).await);

    proxy.partition();
    assert!(proxy.is_partitioned());
    // The open connection is cut.
    let (rest, _) = tokio::time::timeout(PATIENCE, read_to_close(&mut before))
        .await
        .unwrap();
    assert!(rest.is_empty());
    // New ones are reset as soon as they are accepted.
    for _ in 0..3 {
        if let Ok(mut during) = TcpStream::connect(proxy.local_addr()).await {
            assert!(!round_trip(&mut during).await);
        }
    }
    let stats = proxy.stats();
    assert!(stats.connections_refused >= 3, "{stats:?}");
    assert_eq!(stats.cuts, 1);

    proxy.heal();
    let mut after = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut after).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_cut_closes_mid_stream() {
    let budget = 256 * 1024;
    let faults = Faults {
        cut_probability: 1.0,
        cut_after_bytes_max: budget,
        cut_after_ms_max: 0,
        ..Faults::default()
    };
    let (sink, received) = sink_server().await;
    let proxy = proxy_to(sink, 7, faults).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    // Far more than socket buffers and the delay line hold, so the writer must see the cut.
    let chunk = payload(64 * 1024, 7);
    let mut sent = 0u64;
    let write_error = loop {
        match tokio::time::timeout(PATIENCE, client.write_all(&chunk)).await.unwrap() {
            Ok(()) => sent += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(sent < 256 * 1024 * 1024, "never cut");
    };
    let (got, _) = tokio::time::timeout(PATIENCE, received).await.unwrap().unwrap();
    assert!(
        got.len() as u64 <= budget,
        "sink got {} bytes past a {budget} byte budget",
        got.len()
    );
    assert!(matches!(
        write_error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    ));
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_cut_closes_an_idle_connection() {
    let faults = Faults {
        cut_probability: 1.0,
        cut_after_bytes_max: 0,
        cut_after_ms_max: 300,
        ..Faults::default()
    };
    let echo = echo_server().await;
    let proxy = proxy_to(echo, 8, faults).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (rest, _) = tokio::time::timeout(PATIENCE, read_to_close(&mut stream))
        .await
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_all_closes_open_connections_only() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo, 9, Faults::default()).await;
    let mut first = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut second = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut first).await && round_trip(&mut second).await);
    proxy.cut_all();
    for stream in [&mut first, &mut second] {
        let (rest, _) = tokio::time::timeout(PATIENCE, read_to_close(stream)).await.unwrap();
        assert!(rest.is_empty());
    }
    assert_eq!(proxy.stats().cuts, 2);
    let mut third = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut third).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_slow_the_stream_and_are_counted() {
    let faults = Faults {
        stall_probability: 0.05,
        stall_ms_min: 20,
        stall_ms_max: 40,
        ..Faults::default()
    };
    let data = payload(128 * 1024, 10);
    let started = Instant::now();
    let (got, proxy) = through_sink(&data, 10, faults).await;
    assert_eq!(sha(&got), sha(&data));
    let stalls = proxy.stats().stalls;
    assert!(stalls > 0);
    // Stalls add up along the stream: at least the shortest one each.
    assert!(
        started.elapsed() >= Duration::from_millis(20) * stalls as u32,
        "{stalls} stalls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_protocol_changes_faults_at_runtime() {
    let echo = echo_server().await;
    let config = Config {
        control: Some(loopback()),
        seed: 11,
        ..Config::new(loopback(), echo)
    };
    let proxy = FaultProxy::start(config).await.unwrap();
    let control = TcpStream::connect(proxy.control_addr().unwrap()).await.unwrap();
    let (r, mut w) = control.into_split();
    let mut replies = BufReader::new(r).lines();
    let mut ask = async |line: &str| -> serde_json::Value {
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let reply = replies.next_line().await.unwrap().unwrap();
        serde_json::from_str(&reply).unwrap()
    };

    let set = ask(r#"{"cmd":"set","latency_ms":100,"jitter_ms":10,"bandwidth_bytes_per_sec":1000000,"stall_probability":0.02,"corrupt_probability":0.0}"#).await;
    assert_eq!(set["ok"], true, "{set}");
    assert_eq!(set["faults"]["latency_ms"], 100);
    assert_eq!(proxy.faults().bandwidth_bytes_per_sec, 1_000_000);
    let set = ask(r#"{"cmd":"set","jitter_ms":0}"#).await;
    assert_eq!(set["faults"]["latency_ms"], 100, "fields not named keep their values");
    assert_eq!(ask(r#"{"cmd":"get"}"#).await["faults"]["jitter_ms"], 0);

    let bad = ask(r#"{"cmd":"set","stall_probability":2}"#).await;
    assert_eq!(bad["ok"], false);
    assert_eq!(proxy.faults().stall_probability, 0.02, "a rejected set changes nothing");
    assert_eq!(ask("not json").await["ok"], false);

    assert_eq!(ask(r#"{"cmd":"partition"}"#).await["partitioned"], true);
    assert!(proxy.is_partitioned());
    assert_eq!(ask(r#"{"cmd":"heal"}"#).await["partitioned"], false);
    assert_eq!(ask(r#"{"cmd":"cut_all"}"#).await["ok"], true);

    ask(r#"{"cmd":"set","latency_ms":0,"stall_probability":0}"#).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut stream).await);
    let stats = ask(r#"{"cmd":"stats"}"#).await;
    assert_eq!(stats["stats"]["bytes_upstream"], 1);
    assert_eq!(stats["stats"]["bytes_downstream"], 1);
    assert_eq!(stats["stats"]["connections_open"], 1);
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let outside: SocketAddr = "192.0.2.1:9000".parse().unwrap();
    for config in [
        Config::new(outside, loopback()),
        Config::new(loopback(), outside),
        Config {
            control: Some(outside),
            ..Config::new(loopback(), loopback())
        },
    ] {
        let err = FaultProxy::start(config).await.unwrap_err();
        assert!(matches!(err, ProxyError::NotLoopback { .. }), "{err}");
    }
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    Config::new(v6, loopback()).validate().unwrap();
}

#[tokio::test]
async fn unreachable_target_resets_the_client() {
    // A port that was free a moment ago: nothing listens there.
    let free = TcpListener::bind(loopback()).await.unwrap().local_addr().unwrap();
    let proxy = proxy_to(free, 12, Faults::default()).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (rest, _) = tokio::time::timeout(PATIENCE, read_to_close(&mut stream))
        .await
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(proxy.stats().connect_failures, 1);
}
