//! The three scenarios. Each prints one line per phase as it ends and returns the phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use md5::{Digest, Md5};
use rand::{Rng, RngCore};

use crate::client::S3;
use crate::stats::{Phase, run_phase};
use crate::{LargeArgs, ListArgs, SmallArgs};

fn random_payload(size: usize) -> Bytes {
    let mut buf = vec![0u8; size];
    rand::rng().fill_bytes(&mut buf);
    Bytes::from(buf)
}

/// A prefix unique to this run, so that a run never reads what an earlier one left.
fn run_id() -> String {
    format!("{:08x}", rand::rng().next_u32())
}

fn report(phase: Phase) -> Phase {
    println!("{}", phase.text_line());
    phase
}

pub async fn large(s3: &S3, a: &LargeArgs) -> Result<Vec<Phase>> {
    ensure!(
        a.count > 0 && a.concurrency > 0,
        "--count and --concurrency must be positive"
    );
    s3.create_bucket().await?;
    let payload = random_payload(a.size);
    let md5 = hex::encode(Md5::digest(&payload));
    let size = a.size as u64;
    let prefix = Arc::new(format!("large-{}-", run_id()));
    println!(
        "# large: {} x {:.1} MiB, c={}, bucket {}",
        a.count,
        size as f64 / 1048576.0,
        a.concurrency,
        s3.bucket_name()
    );

    let (c, p, b) = (s3.clone(), prefix.clone(), payload.clone());
    let put = report(
        run_phase("large", "put", a.concurrency, a.count, None, move |i| {
            let (c, key, body) = (c.clone(), format!("{p}{i:05}"), b.clone());
            async move {
                c.put(&key, body).await?;
                Ok(size)
            }
        })
        .await,
    );
    put.require_success()?;

    let (c, p) = (s3.clone(), prefix.clone());
    let get = report(
        run_phase("large", "get", a.concurrency, a.count, None, move |i| {
            let (c, key) = (c.clone(), format!("{p}{i:05}"));
            async move {
                let (n, _) = c.get(&key, false).await?;
                ensure!(n == size, "GET {key}: {n} bytes, expected {size}");
                Ok(n)
            }
        })
        .await,
    );

    // Verify one object's content, outside the timed phases.
    let key = format!("{prefix}00000");
    let (_, got) = s3.get(&key, true).await?;
    ensure!(
        got.as_deref() == Some(md5.as_str()),
        "GET {key}: MD5 {got:?}, expected {md5}"
    );
    println!("# large: MD5 of {key} verified");

    if !a.keep {
        let (c, p) = (s3.clone(), prefix.clone());
        let del = run_phase("large", "delete", a.concurrency, a.count, None, move |i| {
            let (c, key) = (c.clone(), format!("{p}{i:05}"));
            async move {
                c.delete(&key).await?;
                Ok(0)
            }
        })
        .await;
        if del.errors > 0 {
            eprintln!("# large: cleanup failed: {}", del.first_error.unwrap_or_default());
        }
    }
    Ok(vec![put, get])
}

pub async fn small(s3: &S3, a: &SmallArgs) -> Result<Vec<Phase>> {
    ensure!(
        a.concurrency > 0 && a.max_ops > 0,
        "--concurrency and --max-ops must be positive"
    );
    ensure!(a.duration > 0.0, "--duration must be positive");
    s3.create_bucket().await?;
    let payload = random_payload(a.size);
    let size = a.size as u64;
    let prefix = Arc::new(format!("small-{}-", run_id()));
    let duration = Some(Duration::from_secs_f64(a.duration));
    println!(
        "# small: {} B objects, c={}, {} s or {} ops per phase, bucket {}",
        a.size,
        a.concurrency,
        a.duration,
        a.max_ops,
        s3.bucket_name()
    );

    let (c, p, b) = (s3.clone(), prefix.clone(), payload.clone());
    let put = report(
        run_phase("small", "put", a.concurrency, a.max_ops, duration, move |i| {
            let (c, key, body) = (c.clone(), format!("{p}{i:08}"), b.clone());
            async move {
                c.put(&key, body).await?;
                Ok(size)
            }
        })
        .await,
    );
    put.require_success()?;
    let written = put.ops;

    let (c, p) = (s3.clone(), prefix.clone());
    let get = report(
        run_phase("small", "get", a.concurrency, a.max_ops, duration, move |_| {
            let (c, key) = (c.clone(), format!("{p}{:08}", rand::rng().random_range(0..written)));
            async move {
                let (n, _) = c.get(&key, false).await?;
                ensure!(n == size, "GET {key}: {n} bytes, expected {size}");
                Ok(n)
            }
        })
        .await,
    );

    let (c, p) = (s3.clone(), prefix.clone());
    let head = report(
        run_phase("small", "head", a.concurrency, a.max_ops, duration, move |_| {
            let (c, key) = (c.clone(), format!("{p}{:08}", rand::rng().random_range(0..written)));
            async move {
                match c.head(&key).await? {
                    Some(n) if n == size => Ok(0),
                    other => bail!("HEAD {key}: {other:?}, expected Some({size})"),
                }
            }
        })
        .await,
    );
    Ok(vec![put, get, head])
}

fn list_key(i: u64) -> String {
    format!("key-{i:08}")
}

pub async fn list(s3: &S3, a: &ListArgs) -> Result<Vec<Phase>> {
    ensure!(
        a.page_size > 0 && a.pages > 0,
        "--page-size and --pages must be positive"
    );
    ensure!(a.keys >= a.page_size as u64, "--keys must be at least --page-size");
    let s3 = s3.with_bucket(&a.list_bucket).with_timeout(Duration::from_secs(60));
    s3.create_bucket().await?;
    let mut phases = Vec::new();

    // "~" sorts after "key-…", so the marker never shows in the timed pages.
    let marker = format!("~filled-{}", a.keys);
    if s3.head(&marker).await?.is_some() {
        println!(
            "# list: bucket {} already holds {} keys (marker {marker})",
            a.list_bucket, a.keys
        );
    } else {
        println!(
            "# list: filling bucket {} with {} empty objects, c={}",
            a.list_bucket, a.keys, a.fill_concurrency
        );
        let c = s3.clone();
        let fill = report(
            run_phase(
                "list",
                "fill",
                a.fill_concurrency,
                a.keys,
                Some(Duration::from_secs(a.fill_timeout)),
                move |i| {
                    let c = c.clone();
                    async move {
                        c.put(&list_key(i), Bytes::new()).await?;
                        Ok(0)
                    }
                },
            )
            .await,
        );
        fill.require_success()?;
        if fill.ops < a.keys {
            bail!(
                "list: filled only {} of {} keys within {} s",
                fill.ops,
                a.keys,
                a.fill_timeout
            );
        }
        s3.put(&marker, Bytes::new()).await?;
        phases.push(fill);
    }

    let (c, keys, page_size) = (s3.clone(), a.keys, a.page_size);
    let pages = report(
        run_phase("list", "page", 1, a.pages, None, move |_| {
            let c = c.clone();
            let start = list_key(rand::rng().random_range(0..=keys - page_size as u64));
            async move {
                let (got, _) = c.list_page(Some(&start), None, page_size).await?;
                ensure!(
                    got.len() == page_size,
                    "LIST after {start}: {} keys, expected {page_size}",
                    got.len()
                );
                Ok(0)
            }
        })
        .await,
    );
    phases.push(pages);

    if a.scan {
        let start = Instant::now();
        let mut lat_us = Vec::new();
        let (mut token, mut total, mut first_error) = (None::<String>, 0u64, None);
        loop {
            let t = Instant::now();
            match s3.list_page(None, token.as_deref(), a.page_size).await {
                Ok((got, next)) => {
                    lat_us.push(t.elapsed().as_micros() as u64);
                    total += got.len() as u64;
                    match next {
                        Some(n) if !got.is_empty() => token = Some(n),
                        _ => break,
                    }
                }
                Err(e) => {
                    first_error = Some(format!("{e:#}"));
                    break;
                }
            }
            ensure!(
                lat_us.len() as u64 <= a.keys / a.page_size as u64 + 10,
                "scan: too many pages"
            );
        }
        if first_error.is_none() && total != a.keys + 1 {
            first_error = Some(format!("scan listed {total} keys, expected {}", a.keys + 1));
        }
        lat_us.sort_unstable();
        let scan = Phase {
            scenario: "list",
            name: "scan".to_owned(),
            concurrency: 1,
            ops: lat_us.len() as u64,
            errors: u64::from(first_error.is_some()),
            bytes: 0,
            secs: start.elapsed().as_secs_f64(),
            lat_us,
            first_error,
        };
        phases.push(report(scan));
    }
    Ok(phases)
}
