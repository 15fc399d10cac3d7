//! Security from day one: bearer tokens on the API, checked join tokens, mutual TLS for Raft.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn api_requires_a_valid_bearer_token_and_changes_nothing_without_one() {
    let mut c = Cluster::new(105, 1, 0);
    c.form();
    let api = c.nodes[0].api.clone();
    let rt = runtime();
    rt.block_on(async {
        let http = https(None);
        let url = format!("https://{api}/api/v1/status");
        let none = http.get(&url).send().await.expect("answer");
        assert_eq!(none.status(), 401);
        let wrong = http.get(&url).bearer_auth("not-the-token").send().await.expect("answer");
        assert_eq!(wrong.status(), 401);
        let write = http
            .post(format!("https://{api}/api/v1/cluster/properties"))
            .json(&serde_json::json!({ "properties": [["label.evil", "1"]] }))
            .send()
            .await
            .expect("answer");
        assert_eq!(write.status(), 401);
        // The OpenAPI document is public and describes the API.
        let doc: serde_json::Value = http
            .get(format!("https://{api}/api/v1/openapi.json"))
            .send()
            .await
            .expect("doc")
            .json()
            .await
            .expect("json");
        assert!(doc["paths"]["/api/v1/status"].is_object(), "{doc}");
    });
    let shown = c.json(&["cluster", "show"]);
    assert!(shown["properties"].get("label.evil").is_none());
    let out = c.halo_env(&["status"], &[("HALO_TOKEN", "wrong")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", text(&out));
}

#[test]
fn join_tokens_are_checked_single_use_and_expire() {
    let mut c = Cluster::new(106, 4, 0);
    c.start_all();
    c.create();

    // A forged token: right peers and CA, wrong secret.
    let good = c.token("10m");
    let forged = {
        let mut t = halo_security::token::JoinToken::decode(&good).expect("decodes");
        t.secret = "0".repeat(64);
        t.encode()
    };
    let api1 = c.nodes[1].api.clone();
    let out = c.halo(&["cluster", "join", "--endpoint", &api1, "--token", &forged]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"), "{}", text(&out));

    // The real token works once...
    let out = c.halo(&["cluster", "join", "--endpoint", &api1, "--token", &good]);
    assert!(out.status.success(), "{}", text(&out));
    // ...and never again.
    let api2 = c.nodes[2].api.clone();
    let out = c.halo(&["cluster", "join", "--endpoint", &api2, "--token", &good]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already used"), "{}", text(&out));

    // An expired token is refused.
    let short = c.token("1s");
    std::thread::sleep(Duration::from_millis(1500));
    let out = c.halo(&["cluster", "join", "--endpoint", &api2, "--token", &short]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"), "{}", text(&out));

    let s = c.status().expect("status");
    assert_eq!(s["nodes"].as_array().map(Vec::len), Some(2), "refused joins must not add nodes: {s}");
}

#[test]
fn raft_rpc_refuses_peers_without_a_cluster_certificate() {
    let mut c = Cluster::new(107, 1, 0);
    c.form();
    // A node of another cluster has a certificate, but not one from this cluster's CA.
    let mut other = Cluster::new(108, 1, 0);
    other.form();
    let read = |n: &str| std::fs::read_to_string(other.nodes[0].data_dir.join(n)).expect("tls file");
    let (cert, key) = (read("node.crt"), read("node.key"));
    let own = |n: &str| std::fs::read_to_string(c.nodes[0].data_dir.join(n)).expect("tls file");
    let (own_cert, own_key) = (own("node.crt"), own("node.key"));

    let url = format!("https://{}/raft/vote", c.nodes[0].nets[0]);
    let rt = runtime();
    rt.block_on(async {
        let body = serde_json::json!({});
        let anonymous = https(None).post(&url).json(&body).send().await;
        assert!(anonymous.is_err(), "a client without a certificate reached Raft: {anonymous:?}");
        let foreign = https(Some((&cert, &key))).post(&url).json(&body).send().await;
        assert!(foreign.is_err(), "a foreign cluster's certificate reached Raft: {foreign:?}");
        // Our own node's certificate gets through TLS (the empty body is then rejected).
        let member = https(Some((&own_cert, &own_key))).post(&url).json(&body).send().await.expect("TLS accepted");
        assert!(member.status().is_client_error());
    });
}

/// Heartbeats are signed but could be recorded: one captured from a node and replayed to the
/// leader after the node died must not keep it `up`. The capture is real (a raw socket sees
/// every UDP datagram the node sends the leader on network 0), the replay a plain UDP socket.
#[test]
fn replayed_heartbeats_do_not_keep_a_dead_node_up() {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;

    let mut c = Cluster::new(166, 3, 0);
    c.form();
    let leader = c.leader().expect("leader");
    let victim = c.nodes.iter().rposition(|n| n.name != leader).expect("a follower");
    let victim_name = c.nodes[victim].name.clone();
    let leader_net = c.nodes[c.index_of(&leader)].nets[0].clone();
    let ip = |address: &str| address.split(':').next().expect("ip").parse::<std::net::Ipv4Addr>().expect("ipv4");
    let (from_ip, to_ip) = (ip(&c.nodes[victim].nets[0]), ip(&leader_net));

    // Capture what the victim sends the leader's heartbeat port for two seconds.
    let raw = socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Udp).expect("raw socket");
    setsockopt(&raw, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(0, 100_000)).expect("timeout");
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < until {
        let Ok(len) = recv(raw.as_raw_fd(), &mut buf, MsgFlags::empty()) else { continue };
        let packet = &buf[..len];
        let header = usize::from(packet[0] & 0x0f) * 4;
        if len < header + 8 {
            continue;
        }
        let (src, dst) = (&packet[12..16], &packet[16..20]);
        let port = u16::from_be_bytes([packet[header + 2], packet[header + 3]]);
        if src == from_ip.octets() && dst == to_ip.octets() && port == NET_PORT {
            captured.push(packet[header + 8..].to_vec());
        }
    }
    drop(raw);
    assert!(captured.len() >= 5, "captured only {} heartbeats", captured.len());

    // The node dies; its recorded heartbeats go on arriving, in order and over and over.
    c.crash(victim);
    let died = std::time::Instant::now();
    let replay = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind((from_ip, 0)).expect("replay socket");
        let end = std::time::Instant::now() + Duration::from_secs(6);
        for datagram in captured.iter().cycle() {
            if std::time::Instant::now() >= end {
                break;
            }
            let _ = socket.send_to(datagram, &leader_net);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let state = |c: &Cluster| {
        c.status().and_then(|s| {
            s["nodes"].as_array()?.iter().find(|n| n["name"] == victim_name.as_str()).map(|n| n["state"].clone())
        })
    };
    // Down after the node timeout (1 s), as without the replay; generous for a busy machine.
    assert!(wait_until(Duration::from_secs(4), || state(&c).is_some_and(|s| s == "down")), "{:?}", c.status());
    println!("dead node down after {} ms despite the replay", died.elapsed().as_millis());
    replay.join().expect("replay thread");
    assert_eq!(state(&c).expect("status"), "down", "the replay brought it back up");
}

/// Every file and directory the agent and its fence guard create is its user's alone (the
/// database holds the cluster CA's key), created that way; a data directory an earlier halo
/// left open is closed; the client config holding the admin token is 0600. Workloads still
/// get a service's umask (022) for what they create.
#[test]
fn data_directories_and_the_client_config_are_private_and_workloads_keep_a_service_umask() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut c = Cluster::new(174, 2, 0);
    // As an earlier halo left it: open to every local user.
    std::fs::DirBuilder::new().mode(0o755).create(&c.nodes[0].data_dir).expect("old data dir");
    std::fs::set_permissions(&c.nodes[0].data_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    c.form();
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let command = format!("umask > {w}/umask; touch {w}/made; exec sleep 100000", w = work.display());
    let out = c.halo(&["role", "create", "files174", "--type", "process", "--param", &format!("command={command}")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("files174", Duration::from_secs(15), |_| true).is_some(), "{:?}", c.role("files174"));
    assert!(wait_until(Duration::from_secs(5), || work.join("made").exists()));
    assert_eq!(std::fs::read_to_string(work.join("umask")).expect("umask").trim(), "0022");
    let made = std::fs::metadata(work.join("made")).expect("made").permissions().mode() & 0o777;
    assert_eq!(made, 0o644, "a workload's file");

    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&c.config), 0o600, "the client config");
    for node in &c.nodes {
        assert_eq!(mode(&node.data_dir), 0o700, "{}", node.data_dir.display());
        let mut seen = 0;
        let mut stack = vec![node.data_dir.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let path = entry.path();
                seen += 1;
                assert_eq!(mode(&path) & 0o077, 0, "{} is open to others: {:o}", path.display(), mode(&path));
                if entry.file_type().expect("type").is_dir() {
                    stack.push(path);
                }
            }
        }
        assert!(seen >= 8, "only {seen} entries under {}", node.data_dir.display());
    }
}

/// Join is open to anyone on the network, so a refused join must cost nothing: no log entry
/// (the leader checks the token before it proposes), no token spent, and a stranger who keeps
/// trying is slowed to a trickle (429) without slowing anyone else down.
#[test]
fn bogus_joins_are_refused_without_growing_the_log_and_are_rate_limited_per_address() {
    let mut c = Cluster::new(175, 2, 0);
    c.start_all();
    c.create();
    // Let the leader's first validation land, so nothing else writes while we measure.
    assert!(c.wait_status(Duration::from_secs(30), |s| s["validation"].is_object()), "{:?}", c.status());
    let good = c.token("10m");
    let token = halo_security::token::JoinToken::decode(&good).expect("decodes");
    let applied = |c: &Cluster| c.status().expect("status")["database"]["applied_index"].as_u64().expect("index");
    let before = applied(&c);

    let api = c.nodes[0].api.clone();
    let stranger: std::net::IpAddr = "127.0.0.66".parse().expect("address");
    let request = |token_id: &str, secret: &str, networks: usize| {
        serde_json::json!({
            "token_id": token_id, "token_secret": secret, "name": "intruder", "api": "127.0.0.66:7000",
            "networks": (0..networks).map(|i| format!("127.0.0.66:{}", 7001 + i)).collect::<Vec<_>>(),
            "witness": false, "csr_pem": "not a certificate request",
        })
    };
    let rt = runtime();
    let answers: Vec<(u16, Option<String>)> = rt.block_on(async {
        let tls = halo_security::tls::unverified_client_config_with(None).expect("tls");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .local_address(stranger)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut answers = Vec::new();
        for i in 0..30 {
            let url = format!("https://{api}/api/v1/join");
            let sent = match i % 4 {
                0 => http.post(&url).json(&request("no-such-token", &token.secret, 1)),
                1 => http.post(&url).json(&request(&token.id, &"0".repeat(64), 1)),
                // The real token, but a record no follower should have to store.
                2 => http.post(&url).json(&request(&token.id, &token.secret, 9)),
                _ => http.post(&url).header("content-type", "application/json").body(vec![b' '; 80 * 1024]),
            };
            let response = sent.send().await.expect("an answer");
            let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            answers.push((response.status().as_u16(), retry));
        }
        answers
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    // The first ten are judged on their merits: bad token 403, oversized record 400, body 413.
    assert_eq!(&statuses[..8], &[403, 403, 400, 413, 403, 403, 400, 413], "{statuses:?}");
    assert!(statuses.iter().all(|s| [400, 403, 413, 429].contains(s)), "{statuses:?}");
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(limited.len() >= 15, "a stranger kept being served: {statuses:?}");
    assert!(limited.iter().all(|a| a.1.is_some()), "429 without Retry-After: {answers:?}");

    assert_eq!(applied(&c), before, "refused joins wrote to the cluster log");
    // The token was not spent, and the node it was made for joins from its own address.
    let api1 = c.nodes[1].api.clone();
    let out = c.halo(&["cluster", "join", "--endpoint", &api1, "--token", &good]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 2), "{:?}", c.status());
}

/// A client that connects and sends nothing, one that sends its headers a byte at a time,
/// and one that opens more connections than its share: each is cut off, and the cluster
/// keeps answering everyone else. (Short limits set in `[connections]`; the defaults are
/// 60 s idle, 10 s for headers, 64 per address.)
#[test]
fn idle_and_slow_connections_are_dropped_and_one_client_cannot_hold_every_place() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut c = Cluster::new(178, 1, 0);
    c.nodes[0].config_toml =
        Some("[connections]\nidle_timeout_s = 2\nheader_timeout_s = 2\nmax = 64\nper_address = 4\n".into());
    c.form();
    let api: std::net::SocketAddr = c.nodes[0].api.parse().expect("api address");
    let rt = runtime();
    rt.block_on(async {
        let mut tls = halo_security::tls::unverified_client_config_with(None).expect("tls");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let connect = |from: &str| {
            let (connector, from) = (connector.clone(), from.parse::<std::net::IpAddr>().expect("address"));
            async move {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.bind((from, 0).into()).expect("bind");
                let tcp = socket.connect(api).await?;
                let name = rustls::pki_types::ServerName::try_from("halo").expect("name");
                connector.connect(name, tcp).await
            }
        };
        // Closed: the read ends (0 bytes or an error) instead of waiting forever.
        async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Option<Duration> {
            let start = std::time::Instant::now();
            let mut buf = [0u8; 1024];
            loop {
                match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
                    Ok(Ok(_)) => continue,
                    Err(_) => return None,
                }
            }
        }

        // Idle: connected, says nothing.
        let mut idle = connect("127.0.0.61").await.expect("connects");
        let took = closed_within(&mut idle, Duration::from_secs(10)).await.expect("an idle connection was kept");
        assert!(took >= Duration::from_millis(1500), "closed before the idle limit: {took:?}");

        // Slow: sends a byte of headers every 300 ms, so it is never idle; the header limit ends it.
        let slow = connect("127.0.0.62").await.expect("connects");
        let (mut reader, mut writer) = tokio::io::split(slow);
        let trickle = tokio::spawn(async move {
            for byte in b"GET /api/v1/status HTTP/1.1\r\nHost: halo\r\nX-Slow: ".iter().cycle().take(200) {
                if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let took = closed_within(&mut reader, Duration::from_secs(10)).await.expect("a slow client was kept");
        assert!(took >= Duration::from_millis(1500), "closed before the header limit: {took:?}");
        trickle.abort();

        // Greedy: four connections from one address hold its share; a fifth is refused.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect("127.0.0.63").await.expect("within its share"));
        }
        let fifth = connect("127.0.0.63").await;
        let refused = match fifth {
            Err(_) => true,
            Ok(mut stream) => closed_within(&mut stream, Duration::from_secs(1)).await.is_some(),
        };
        assert!(refused, "a fifth connection from one address was served");
        // Everyone else is still answered meanwhile.
        let other = connect("127.0.0.64").await;
        assert!(other.is_ok(), "another client was refused: {other:?}");
        drop(held);
    });
    assert!(c.status().is_some(), "the API stopped answering");
}

/// A node's certificate speaks only for that node, and a removed node's certificate speaks
/// for nobody: refused in the handshake on every peer route of every node, and on a
/// connection it opened before its removal. The heartbeat key it knew is replaced.
#[test]
fn a_removed_nodes_certificate_is_refused_on_every_peer_route_and_a_member_speaks_only_for_itself() {
    let mut c = Cluster::new(179, 3, 0);
    c.form();
    let identity = |i: usize| {
        let read = |f: &str| std::fs::read_to_string(c.nodes[i].data_dir.join(f)).expect("tls file");
        (read("node.crt"), read("node.key"))
    };
    let id_of = |name: &str| {
        let s = c.status().expect("status");
        s["nodes"].as_array().and_then(|n| n.iter().find(|n| n["name"] == name)).and_then(|n| n["id"].as_u64())
    };
    let n1 = id_of("n1").expect("n1");
    let (cert2, key2) = identity(1);
    let (cert3, key3) = identity(2);
    let peers: Vec<String> = c.nodes.iter().map(|n| format!("https://{}", n.nets[0])).collect();
    let peer = |i: usize| peers[i].clone();
    let routes = [
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
        "/raft/transfer-leader",
        "/peer/v1/leader",
        "/peer/v1/probe",
        "/peer/v1/log",
    ];
    let rt = runtime();
    let early = https(Some((&cert3, &key3)));
    rt.block_on(async {
        // n2 claims to be n1: as the leader of an append, as a candidate.
        let as_n2 = https(Some((&cert2, &key2)));
        // Raft's messages as they travel (JSON): well-formed, so only the claim is refused.
        let leader = serde_json::json!({ "term": 1_000, "node_id": n1 });
        let append = serde_json::json!({
            "vote": { "leader_id": leader, "committed": true },
            "prev_log_id": null,
            "entries": [],
            "leader_commit": null,
        });
        let vote = serde_json::json!({ "vote": { "leader_id": leader, "committed": false }, "last_log_id": null });
        for (route, body) in [("/raft/append", &append), ("/raft/vote", &vote), ("/raft/pre-vote", &vote)] {
            let answer = as_n2.post(format!("{}{route}", peer(2))).json(&body).send().await.expect("an answer");
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            assert_eq!(status, 403, "{route}: n2 spoke for n1: {text}");
            assert!(text.contains(&format!("cannot speak for node id {n1}")), "{route}: {text}");
        }
        // n3 opens a connection while still a member (and keeps it).
        let before = early.post(format!("{}/peer/v1/log", peer(0))).json(&serde_json::json!({})).send().await;
        assert!(before.is_ok_and(|r| r.status() != 403), "n3 refused while a member");
    });

    c.kill9(2);
    let out = c.halo(&["node", "remove", "n3"]);
    assert!(out.status.success(), "{}", text(&out));
    let removed_at = c.last_event();
    rt.block_on(async {
        let removed = https(Some((&cert3, &key3)));
        for i in [0, 1] {
            for route in routes {
                let answer = removed.post(format!("{}{route}", peer(i))).json(&serde_json::json!({})).send().await;
                assert!(answer.is_err(), "{route} on node {i}: a revoked certificate got through TLS: {answer:?}");
            }
        }
        // The connection n3 opened before its removal is refused request by request.
        let answer = early
            .post(format!("{}/peer/v1/log", peer(0)))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("the connection opened before the removal is still open");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("revoked"), "{text}");
    });
    // Every node took the new heartbeat key and still hears the others.
    for i in [0, 1] {
        assert!(
            wait_until(Duration::from_secs(10), || c.log(i).contains("heartbeat key changed")),
            "{} kept the removed node's heartbeat key: {}",
            c.nodes[i].name,
            c.log(i)
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let lost: Vec<String> = c.went_down_after(removed_at).into_iter().filter(|n| n != "n3").collect();
    assert!(lost.is_empty(), "lost over the key change: {lost:?}");
    let s = c.status().expect("status");
    assert_eq!(up_count(&s), 2, "a node was lost over the key change: {s}");
    assert!(s["nodes"].as_array().is_some_and(|n| n.iter().all(|n| n["state"] == "up")), "{s}");
}

/// Certificates expire, and every node renews its own before it does: with a 20 s lifetime
/// the joined nodes get new certificates (new key, new serial) about 13 s in, `node show`
/// tells the new expiry, and the cluster works on past the old certificates' end, which no
/// node accepts any more.
#[test]
fn node_certificates_expire_and_are_renewed_before_they_do() {
    let mut c = Cluster::new(180, 3, 0);
    c.start_all();
    c.create();
    let out = c.halo(&["cluster", "set", "certificate_lifetime_ms=20000"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.halo(&["cluster", "set", "certificate_lifetime_ms=5"]);
    assert!(!out.status.success() && text(&out).contains("certificate_lifetime_ms"), "{}", text(&out));
    for i in 1..3 {
        let out = c.join(i);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 3), "{:?}", c.status());
    let read = |i: usize, f: &str| std::fs::read_to_string(c.nodes[i].data_dir.join(f)).expect("tls file");
    let (old_cert, old_key) = (read(1, "node.crt"), read(1, "node.key"));
    let old = halo_security::revocation::identity_of_pem(&old_cert).expect("certificate");
    let expires = |c: &Cluster| c.json(&["node", "show", "n2"])["certificate_expires_ms"].as_u64();
    let first = expires(&c).expect("node show tells the expiry");
    assert_eq!(first, old.not_after_ms);
    assert!(text(&c.halo(&["node", "show", "n2"])).contains("cert     expires"));

    // The cluster records the new certificate before the node has saved it: wait for both.
    let on_disk = || halo_security::revocation::identity_of_pem(&read(1, "node.crt")).expect("certificate");
    assert!(
        wait_until(Duration::from_secs(30), || expires(&c).is_some_and(|e| e > first)
            && on_disk().serial != old.serial),
        "n2 did not renew: {}",
        c.log(1)
    );
    assert_eq!(Some(on_disk().not_after_ms), expires(&c), "the cluster records the certificate n2 uses");
    assert_ne!(read(1, "node.key"), old_key, "a renewal makes a new key");

    // Past the first certificates' end: the cluster works on, n2 answers through its peers.
    let wait = Duration::from_millis(old.not_after_ms.saturating_sub(now_ms()) + 2_000);
    std::thread::sleep(wait);
    let out = c.halo(&["cluster", "set", "label.renewed=yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let endpoint = c.nodes[1].api.clone();
    let out = c.halo_env(&["status", "--json"], &[("HALO_ENDPOINT", &endpoint)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_status(Duration::from_secs(10), |s| up_count(s) == 3 && s["quorum"] == true), "{:?}", c.status());

    // The expired certificate opens no connection.
    let rt = runtime();
    rt.block_on(async {
        let expired = https(Some((&old_cert, &old_key)));
        let url = format!("https://{}/peer/v1/log", c.nodes[0].nets[0]);
        let answer = expired.post(url).json(&serde_json::json!({})).send().await;
        assert!(answer.is_err(), "an expired certificate got through TLS: {answer:?}");
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Bootstrapping an agent hands it the cluster's secrets, so the admin can pin which agent
/// that is: the fingerprint it prints. A wrong pin is refused before the bootstrap secret or
/// a token is sent; without a pin the command works and warns with what it saw. On the
/// agent's own machine, only root (or the agent's user) is trusted without the secret.
#[test]
fn bootstrap_pins_the_agents_fingerprint_and_trusts_only_root_locally() {
    let mut c = Cluster::new(181, 2, 0);
    c.start_all();
    let endpoint = c.nodes[0].api.clone();
    let fingerprint = c.fingerprint(0);
    assert_eq!(fingerprint.len(), 64, "{fingerprint}");
    assert!(c.log(0).contains(&fingerprint), "the agent's log does not show its fingerprint: {}", c.log(0));

    // Another machine's fingerprint: refused, and the agent is still unjoined.
    let other = c.fingerprint(1);
    let out = c.halo(&["cluster", "create", "--name", "test", "--endpoint", &endpoint, "--fingerprint", &other]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("not the pinned") && said.contains(&fingerprint), "{said}");
    assert!(c.log(0).contains("waiting for `halo cluster create`") && !c.log(0).contains("agent started as member"));
    let out = c.halo(&["cluster", "create", "--name", "test", "--endpoint", &endpoint, "--fingerprint", "abc"]);
    assert!(!out.status.success() && text(&out).contains("--fingerprint 'abc'"), "{}", text(&out));

    // Another local user, without the secret: refused.
    let config = tempfile::NamedTempFile::new().expect("temp file");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe())
        .args(["cluster", "create", "--name", "test", "--endpoint", &endpoint, "--fingerprint", &fingerprint])
        .env("HALO_CONFIG", config.path())
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    assert!(text(&out).contains("must come from root"), "{}", text(&out));

    // Unpinned: works, with a warning naming what it trusted.
    let out = c.halo(&["cluster", "create", "--name", "test", "--endpoint", &endpoint]);
    assert!(out.status.success(), "{}", text(&out));
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("was not authenticated") && warned.contains(&fingerprint), "{warned}");
    // Pinned: works, silently.
    let out = c.join(1);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", text(&out));
}

/// Shared storage is writable by others: a link planted where validation makes its test
/// directory is refused and named, and nothing is written where it points.
#[test]
fn a_link_planted_in_shared_storage_is_not_followed() {
    let mut c = Cluster::new(182, 2, 0);
    c.start_all();
    let shared = c.dir.path().join("shared");
    let victim = c.dir.path().join("victim");
    std::fs::create_dir_all(&shared).expect("shared");
    std::fs::create_dir_all(&victim).expect("victim");
    std::os::unix::fs::symlink(&victim, shared.join(".halo-validate")).expect("link");
    let fingerprints = format!("{},{}", c.fingerprint(0), c.fingerprint(1));
    let apis = format!("{},{}", c.nodes[0].api, c.nodes[1].api);
    let shared_arg = shared.to_str().expect("path");
    let args = ["validate", "--nodes", &apis, "--fingerprint", &fingerprints, "--shared-storage", shared_arg, "--json"];
    let out = c.halo(&args);
    assert!(!out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let named = checks.iter().find(|c| c["outcome"] == "fail" && c.to_string().contains("symbolic link"));
    assert!(named.is_some(), "no failed check names the link: {checks:#?}");
    assert_eq!(std::fs::read_dir(&victim).expect("victim").count(), 0, "something was written through the link");
}

/// Least privilege: a viewer token reads (status, /metrics) but cannot stop a role; an
/// operator's stops it but cannot change the cluster; events name the token that acted; a
/// revoked or expired token is refused, and a rotated admin token stops working at once.
#[test]
fn a_viewer_reads_an_operator_operates_and_revoked_or_rotated_tokens_stop_working() {
    let mut c = Cluster::new(183, 1, 0);
    c.form();
    let out = c.halo(&["role", "create", "web183", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("web183", Duration::from_secs(15), |_| true).is_some(), "{}", c.log(0));
    let make = |name: &str, role: &str, ttl: Option<&str>| {
        let mut args = vec!["token", "create", name, "--role", role, "--json"];
        args.extend(ttl.iter().flat_map(|t| ["--ttl", *t]));
        let out = c.halo(&args);
        assert!(out.status.success(), "{}", text(&out));
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(created["role"], role);
        created["token"].as_str().expect("token").to_string()
    };
    let (viewer, operator, brief) =
        (make("grafana", "viewer", None), make("ops", "operator", None), make("brief", "viewer", Some("2s")));
    let as_token = |token: &str, args: &[&str]| c.halo_env(args, &[("HALO_TOKEN", token)]);

    // The viewer reads...
    assert!(as_token(&viewer, &["status"]).status.success());
    let api = c.nodes[0].api.clone();
    let rt = runtime();
    let metrics = rt.block_on(async {
        https(None).get(format!("https://{api}/metrics")).bearer_auth(&viewer).send().await.map(|r| r.status().as_u16())
    });
    assert_eq!(metrics.ok(), Some(200));
    // ...and nothing else.
    for args in [vec!["role", "stop", "web183"], vec!["token", "list"], vec!["cluster", "set", "label.x=1"]] {
        let out = as_token(&viewer, &args);
        assert!(!out.status.success(), "a viewer ran {args:?}");
        assert!(text(&out).contains("is a viewer token"), "{args:?}: {}", text(&out));
    }
    // The operator runs the cluster, but does not change it.
    let out = as_token(&operator, &["role", "stop", "web183"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = as_token(&operator, &["role", "create", "x183", "--type", "process", "--param", "command=exec sleep 1"]);
    assert!(!out.status.success() && text(&out).contains("needs admin"), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(15), || c.role("web183").is_some_and(|r| r["state"] == "offline")));
    let events: serde_json::Value = serde_json::from_slice(&c.halo(&["events", "--json"]).stdout).expect("events");
    let by_ops = events.as_array().is_some_and(|e| {
        e.iter().any(|e| {
            e["subject"] == "web183"
                && e["by"] == "ops"
                && e["change"]["change"] == "role_desired"
                && e["change"]["desired"] == "stopped"
        })
    });
    assert!(by_ops, "no event names the operator's token: {events:#}");

    // Revoked and expired tokens are refused.
    let out = c.halo(&["token", "revoke", "grafana"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&as_token(&viewer, &["status"])).contains("401"));
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(text(&as_token(&brief, &["status"])).contains("401"));
    let listed: serde_json::Value = serde_json::from_slice(&c.halo(&["token", "list", "--json"]).stdout).expect("list");
    let names: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["ops"], "{listed}");
    assert!(!listed.to_string().contains(&operator), "a secret was listed");

    // Rotating the admin token: the old one stops working, the client config has the new one.
    let old = c.admin_token();
    let out = c.halo(&["token", "rotate-admin"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(c.admin_token(), old);
    assert!(text(&as_token(&old, &["status"])).contains("401"));
    assert!(c.halo(&["status"]).status.success());
}

/// A workload that floods its output cannot fill the data directory: its log is cut back to
/// its bound (8 MiB, checked every second), the previous part kept beside it, and the
/// workload writes on.
#[test]
fn a_flooding_workload_does_not_grow_its_log_beyond_its_bound() {
    const MAX: u64 = 8 << 20;
    let mut c = Cluster::new(184, 1, 0);
    c.form();
    // About 6 MB/s: more than three bounds' worth over the test.
    let flood = "command=while :; do printf %065536d 0; sleep 0.01; done";
    let out = c.halo(&["role", "create", "flood184", "--type", "process", "--param", flood]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("flood184", Duration::from_secs(15), |_| true).is_some(), "{}", c.log(0));
    let logs = c.nodes[0].data_dir.join("logs");
    let log = std::fs::read_dir(&logs)
        .expect("logs")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("flood184.") && n.to_string_lossy().ends_with(".log"))
        })
        .expect("the workload's log");
    let previous = std::path::PathBuf::from(format!("{}.1", log.display()));
    let (mut peak, mut cut) = (0, false);
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        peak = peak.max(std::fs::metadata(&log).map_or(0, |m| m.len()));
        cut |= std::fs::metadata(&previous).is_ok_and(|m| m.len() == MAX);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cut, "the log was never cut back (peak {peak} bytes)");
    assert!(peak <= 2 * MAX, "the log grew to {peak} bytes, past its bound");
    assert!(c.role("flood184").is_some_and(|r| r["state"] == "online"), "the workload did not write on");
    let out = c.halo(&["role", "stop", "flood184"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A secret parameter reaches the workload, and no view, event, log or console page shows it.
#[test]
fn a_secret_parameter_is_absent_from_every_output() {
    const SECRET: &str = "hunter2-secret-185";
    let mut c = Cluster::new(185, 1, 0);
    c.form();
    let seen = c.dir.path().join("seen185");
    let command = format!("command=printf %s \"$PASSWORD\" > {}; exec sleep 100000", seen.display());
    let secret = format!("env.PASSWORD={SECRET}");
    let out = c.halo(&["role", "create", "db185", "--type", "process", "--param", &command, "--secret-param", &secret]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("db185", Duration::from_secs(15), |_| true).is_some(), "{}", c.log(0));
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&seen).is_ok_and(|s| s == SECRET)),
        "the workload did not get it"
    );
    // A plain parameter of the same name, or a secret one a VM would take, is refused.
    let both = c.halo(&[
        "role",
        "create",
        "x185",
        "--type",
        "process",
        "--param",
        &command,
        "--param",
        "env.PASSWORD=a",
        "--secret-param",
        "env.PASSWORD=b",
    ]);
    assert!(!both.status.success() && text(&both).contains("also a plain one"), "{}", text(&both));

    let mut outputs = Vec::new();
    for args in [
        vec!["role", "show", "db185", "--json"],
        vec!["role", "show", "db185"],
        vec!["role", "list", "--json"],
        vec!["status", "--json"],
        vec!["events", "--json"],
        vec!["log", "--json"],
    ] {
        let out = c.halo(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        outputs.push((format!("{args:?}"), text(&out)));
    }
    let shown = &outputs[0].1;
    assert!(shown.contains("env.PASSWORD") && shown.contains("(secret)"), "{shown}");
    let api = c.nodes[0].api.clone();
    let token = c.admin_token();
    let rt = runtime();
    let page = rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(halo_security::tls::unverified_client_config_with(None).expect("tls"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = client
            .post(format!("https://{api}/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .expect("login");
        let cookie =
            login.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
        let page = client.get(format!("https://{api}/console/roles/db185")).header("cookie", cookie).send().await;
        page.expect("page").text().await.expect("text")
    });
    assert!(page.contains("env.PASSWORD"), "{page}");
    outputs.push(("console".into(), page));
    for (i, node) in c.nodes.iter().enumerate() {
        outputs.push((format!("agent log {}", node.name), c.log(i)));
    }
    for (what, output) in &outputs {
        assert!(!output.contains(SECRET), "{what} shows the secret: {output}");
    }
}

/// The cluster CA and the heartbeat key are replaced while the cluster runs: `rotate-ca`
/// ends with every node trusting and presenting only the new CA, the client config following
/// along; a role runs on untouched throughout; an old client config and a node certificate of
/// the old CA are refused; the heartbeat key changes and every node keeps hearing the others.
#[test]
fn the_cluster_ca_and_the_heartbeat_key_rotate_while_the_cluster_runs() {
    let mut c = Cluster::new(188, 3, 0);
    c.form();
    let out = c.halo(&["role", "create", "steady188", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    let owner = c.wait_online("steady188", Duration::from_secs(15), |_| true).expect("online");
    let pids = c.role_processes("steady188");
    let generation = c.role("steady188").expect("role")["generation"].clone();

    let read = |i: usize, f: &str| std::fs::read_to_string(c.nodes[i].data_dir.join(f)).expect("tls file");
    let old_ca = read(0, "ca.crt");
    let (old_cert, old_key) = (read(2, "node.crt"), read(2, "node.key"));
    let old_config = c.dir.path().join("old-client.toml");
    std::fs::copy(&c.config, &old_config).expect("copy the client config");

    let out = c.halo(&["cluster", "rotate-ca", "--json", "--timeout", "90s"]);
    assert!(out.status.success(), "rotate-ca: {}\n{}", text(&out), c.log(0));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(done["stage"].is_null(), "{done}");
    let new_sha = done["ca_sha256"].as_str().expect("sha").to_string();
    assert_ne!(halo_security::ca::fingerprint(&old_ca).expect("old"), new_sha);

    for i in 0..3 {
        // Each node trusts the new CA only (a moment after the last step), and its
        // certificate is signed by it.
        let new_only = || {
            let trusted = read(i, "ca.crt");
            halo_security::tls::certs_from_pem(&trusted).is_ok_and(|c| c.len() == 1)
                && halo_security::ca::fingerprint(&trusted).is_ok_and(|f| f == new_sha)
        };
        assert!(wait_until(Duration::from_secs(5), new_only), "n{} still trusts the old CA", i + 1);
        let trusted = read(i, "ca.crt");
        assert_eq!(halo_security::tls::certs_from_pem(&trusted).expect("pem").len(), 1, "{trusted}");
        assert_eq!(halo_security::ca::fingerprint(&trusted).expect("ca"), new_sha);
        let verifier = halo_security::tls::client_config(&trusted, None).expect("verifier");
        let client = reqwest::Client::builder().tls_backend_preconfigured(verifier).build().expect("client");
        let url = format!("https://{}/api/v1/ca", c.nodes[i].api);
        let answer = runtime().block_on(async { client.get(url).send().await });
        assert!(answer.is_ok(), "n{} does not present a certificate of the new CA: {answer:?}", i + 1);
    }
    // The client config follows; one that kept the old CA is refused by every node.
    let out = c.halo(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.halo_env(&["status"], &[("HALO_CONFIG", old_config.to_str().expect("path"))]);
    assert!(!out.status.success(), "a client trusting only the old CA got an answer: {}", text(&out));
    // A node certificate of the old CA is refused between nodes.
    let url = format!("https://{}/raft/append", c.nodes[0].nets[0]);
    let refused = runtime()
        .block_on(async { https(Some((&old_cert, &old_key))).post(url).json(&serde_json::json!({})).send().await });
    assert!(refused.is_err(), "a certificate of the old CA got through: {refused:?}");
    let events = text(&c.halo(&["events"]));
    for said in ["CA rotation started", "every node trusts the new CA", "CA rotation finished"] {
        assert!(events.contains(said), "no event '{said}': {events}");
    }
    // The role ran on, untouched.
    let role = c.role("steady188").expect("role");
    assert_eq!((role["owner"].as_str(), &role["generation"]), (Some(owner.as_str()), &generation), "{role}");
    assert_eq!(c.role_processes("steady188"), pids);

    // The heartbeat key.
    let rotated_at = c.last_event();
    let out = c.halo(&["cluster", "rotate-heartbeat-key"]);
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..3 {
        assert!(
            wait_until(Duration::from_secs(10), || c.log(i).contains("heartbeat key changed")),
            "n{} kept the old heartbeat key",
            i + 1
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.went_down_after(rotated_at), Vec::<String>::new(), "a node was lost over the key change");
    let s = c.status().expect("status");
    assert_eq!(up_count(&s), 3, "a node was lost over the key change: {s}");
    assert!(text(&c.halo(&["events"])).contains("the heartbeat key was rotated"));
    let out = c.halo(&["role", "stop", "steady188"]);
    assert!(out.status.success(), "{}", text(&out));
}
