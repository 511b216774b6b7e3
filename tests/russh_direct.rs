//! The direct write path of our russh (`third_party/russh`,
//! `russh::server::DirectWriter`), which the notification bus uses to seal
//! and send a notification without the SSH session task: data written
//! directly from another thread, mixed with data written through the
//! channel's own writer, reaches a real russh client whole and in order,
//! through many key re-exchanges (a 16 KiB rekey limit) and a small
//! channel window (the direct writer must refuse when the window or
//! russh's queue would be overtaken).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::{Algorithm, PrivateKey, PublicKeyOrCertificate};
use russh::server::{Auth, ChannelOpenHandle, DirectWrite, DirectWriter, Msg, Session};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Limits};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

struct Server {
    opened: mpsc::UnboundedSender<(ChannelReadHalf, ChannelWriteHalf<Msg>, DirectWriter)>,
}

impl russh::server::Handler for Server {
    type Error = russh::Error;

    async fn auth_password(&mut self, _: &str, _: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let (read, write) = channel.split();
        let direct = session.direct_writer(&write);
        let _ = self.opened.send((read, write, direct));
        Ok(())
    }
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Message `i`: its number and a length that varies (60..=700 bytes), so
/// that messages straddle SSH packets, rekeys and window adjustments.
fn message(i: usize) -> Vec<u8> {
    let len = 60 + (i * 7919) % 641;
    let mut m = format!("<{i:06}>").into_bytes();
    m.resize(len - 1, b'a' + (i % 26) as u8);
    m.push(b'\n');
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_arrive_whole_and_in_order_through_rekeys() {
    const MESSAGES: usize = 3000;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        limits: Limits::new(16 * 1024, 1 << 30, Duration::from_secs(3600)),
        auth_rejection_time: Duration::from_millis(0),
        nodelay: true,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (opened, mut opened_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let session = russh::server::run_stream(config, socket, Server { opened })
            .await
            .unwrap();
        let _ = session.await;
    });

    let client_config = Arc::new(russh::client::Config {
        // a small window: the server runs out of it often
        window_size: 8 * 1024,
        ..Default::default()
    });
    let mut client = russh::client::connect(client_config, addr, Client)
        .await
        .unwrap();
    assert!(client
        .authenticate_password("test", "test")
        .await
        .unwrap()
        .success());
    let mut ch = client.channel_open_session().await.unwrap();
    let (_read, write, direct) = opened_rx.recv().await.unwrap();

    // The writer: each message directly when the direct writer takes it
    // (from whichever worker thread runs this task), else through the
    // channel's writer; every fiftieth through the channel in any case, so
    // that russh's queue often holds data the direct writer must not
    // overtake.
    let written = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let counts = written.clone();
    let writer = tokio::spawn(async move {
        let mut tx = write.make_writer();
        for i in 0..MESSAGES {
            let m = Bytes::from(message(i));
            let how = if i.is_multiple_of(50) {
                DirectWrite::Refused
            } else {
                direct.try_data(&m)
            };
            counts[how as usize].fetch_add(1, Ordering::Relaxed);
            if how == DirectWrite::Refused {
                tx.write_all(&m).await.unwrap();
            }
            // now and then give the session loop time to drain its queue
            // and lend its write state again
            if i.is_multiple_of(10) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tx.flush().await.unwrap();
        // keep the channel open until the client has read everything
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(write);
    });

    let expected: Vec<u8> = (0..MESSAGES).flat_map(message).collect();
    let mut got = Vec::with_capacity(expected.len());
    let read = async {
        while got.len() < expected.len() {
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) => got.extend_from_slice(&data),
                Some(_) => {}
                None => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the client read everything in time");
    writer.abort();
    assert_eq!(got.len(), expected.len());
    if got != expected {
        let at = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap();
        panic!(
            "the stream differs at byte {at}: got {:?}, expected {:?}",
            String::from_utf8_lossy(&got[at.saturating_sub(20)..(at + 40).min(got.len())]),
            String::from_utf8_lossy(
                &expected[at.saturating_sub(20)..(at + 40).min(expected.len())]
            ),
        );
    }
    let [w, b, r] = [0, 1, 2].map(|k| written[k].load(Ordering::Relaxed));
    eprintln!("direct writes: {w} written, {b} begun; {r} through the channel");
    // the test means something only if both paths carried data
    assert!(
        w + b > MESSAGES / 4,
        "direct writes: {w} written, {b} begun, {r} refused"
    );
    assert!(r >= MESSAGES / 50, "refused (through the channel): {r}");
}
