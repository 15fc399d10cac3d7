//! The web console in a real browser: headless Chromium driven through ChromeDriver (WebDriver)
//! logs in, sees the nodes and roles, moves a role from its page and watches the owner change
//! without reloading. Requests without the token are refused, and every string users can set
//! is shown as text. Screenshots go to target/test-artifacts/console-*.png.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

const XSS: &str = "<script>alert(1)</script>";
const FORM: &str = "application/x-www-form-urlencoded";

/// ChromeDriver on a port of its own, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver(port: u16) -> Driver {
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (scripts/setup installs chromium-driver)");
    let driver = Driver(child);
    assert!(
        wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "chromedriver did not listen"
    );
    driver
}

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--window-size=1366,900",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("an object") };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

async fn screenshot(browser: &Client, name: &str) {
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a blank or broken screenshot");
    std::fs::write(artifacts.join(format!("console-{name}.png")), png).expect("write screenshot");
}

async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Poll (every 100 ms, up to `limit`) until `css`'s text satisfies `check`; the last text read.
async fn wait_text(browser: &Client, css: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let text = text_of(browser, css).await;
        if check(&text) || tokio::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No JavaScript dialog is open: nothing a user wrote ran as a script.
async fn no_alert(browser: &Client) {
    assert!(browser.get_alert_text().await.is_err(), "a dialog opened: user input ran as a script");
}

#[test]
fn the_console_logs_in_shows_the_cluster_and_moves_a_role_live() {
    let mut c = Cluster::new(165, 3, 0);
    c.form();
    let token = c.admin_token();
    // A role whose stop takes three seconds, so the move is visibly under way for a while.
    let command = "command=trap 'sleep 3; exit 0' TERM; while :; do sleep 0.2; done";
    let out = c.halo(&["role", "create", "web", "--type", "process", "--param", command, "--preferred", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("web", Duration::from_secs(15), |_| true).as_deref(), Some("n1"));
    // Strings users set, each a script if the console forgot to escape it.
    let description = format!("description={XSS}");
    let label = format!("label.owner={XSS}");
    let out = c.halo(&["cluster", "set", &description, &label]);
    assert!(out.status.success(), "{}", text(&out));
    let command = format!("command=echo '{XSS}'; exec sleep 100000");
    let out = c.halo(&["role", "create", "odd", "--type", "process", "--param", &command, "--preferred", "n2"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.halo(&["role", "create", XSS, "--type", "process", "--param", "command=exec sleep 1"]);
    assert!(!out.status.success(), "a role named like a script was accepted");

    let api = c.nodes[1].api.clone();
    let base = format!("https://{api}");
    let rt = runtime();
    refuses_requests_without_the_token(&c, &rt, &base, &token);

    let _driver = chromedriver(9165);
    let profile = tempfile::tempdir().expect("profile");
    rt.block_on(async {
        let browser = browser(9165, profile.path()).await;
        // Any console page without a session leads to the login page.
        browser.goto(&format!("{base}/console/roles/web")).await.expect("goto");
        assert_eq!(browser.current_url().await.expect("url").path(), "/console/login");
        browser.find(Locator::Css("#token")).await.expect("token field").send_keys("wrong").await.expect("type");
        browser.find(Locator::Css("form.login button")).await.expect("button").click().await.expect("click");
        let refused = wait_text(&browser, ".problem", Duration::from_secs(5), |t| !t.is_empty()).await;
        assert!(refused.contains("not a token of this cluster"), "{refused}");
        screenshot(&browser, "login").await;
        let field = browser.find(Locator::Css("#token")).await.expect("token field");
        field.clear().await.expect("clear");
        field.send_keys(&token).await.expect("type");
        browser.find(Locator::Css("form.login button")).await.expect("button").click().await.expect("click");

        // The overview: three nodes, the roles, the cluster's own strings as text.
        let nodes = wait_text(&browser, "#nodes", Duration::from_secs(10), |t| t.contains("n3")).await;
        for node in ["n1", "n2", "n3"] {
            assert!(nodes.contains(node), "{nodes}");
        }
        let roles = wait_text(&browser, "#roles", Duration::from_secs(10), |t| t.contains("odd")).await;
        assert!(roles.contains("web") && roles.contains("online"), "{roles}");
        assert_eq!(text_of(&browser, ".description").await, XSS);
        let summary = text_of(&browser, "#summary").await;
        assert_eq!(summary.matches(XSS).count(), 2, "the description and the label, as text: {summary}");
        assert!(summary.contains("label.owner") && summary.contains("✔ yes"), "{summary}");
        let source = browser.source().await.expect("source");
        assert!(source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "not escaped in the HTML");
        no_alert(&browser).await;
        screenshot(&browser, "overview").await;

        // A user string on a role page, and a name that is not a role echoed back in an error.
        browser.goto(&format!("{base}/console/roles/odd")).await.expect("goto");
        let params = wait_text(&browser, "td.params", Duration::from_secs(5), |t| !t.is_empty()).await;
        assert!(params.contains(XSS), "{params}");
        browser.goto(&format!("{base}/console/roles/%3Cscript%3Ealert(1)%3C%2Fscript%3E")).await.expect("goto");
        let problem = wait_text(&browser, ".problem", Duration::from_secs(5), |t| !t.is_empty()).await;
        assert_eq!(problem, format!("no role named '{XSS}'"));
        no_alert(&browser).await;

        // The role page: move web to n3 (cold), confirm, and watch the owner change in place.
        browser.goto(&format!("{base}/console/")).await.expect("goto");
        browser.find(Locator::Css("tr[data-role='web'] a")).await.expect("web's link").click().await.expect("click");
        assert_eq!(wait_text(&browser, "#role-owner", Duration::from_secs(5), |t| t == "n1").await, "n1");
        let target = browser.find(Locator::Css("#move-to")).await.expect("target");
        target.select_by_value("n3").await.expect("select n3");
        browser.find(Locator::Css("#move-mode")).await.expect("mode").select_by_value("cold").await.expect("cold");
        browser.find(Locator::Css("#move button")).await.expect("move").click().await.expect("click");
        // The confirmation page says what will happen.
        let question = wait_text(&browser, "h1", Duration::from_secs(5), |t| t.contains("Move role web")).await;
        assert_eq!(question, "Move role web?", "{}", browser.source().await.unwrap_or_default());
        assert!(text_of(&browser, "main").await.contains("from n1 to n3 (cold migration)"));
        screenshot(&browser, "confirm").await;
        browser.find(Locator::Css("#confirm")).await.expect("confirm").click().await.expect("click");
        let notice = wait_text(&browser, ".notice", Duration::from_secs(5), |t| !t.is_empty()).await;
        assert!(notice.starts_with("Move requested"), "{notice}");
        // From here on the page is never reloaded: this mark would be gone.
        browser.execute("window.haloMark = 'same page';", vec![]).await.expect("mark");
        // The stop takes 3 s: the page first shows the move under way (still on n1, or placed on
        // n3 but not yet online there while n1 stops it).
        let before = (text_of(&browser, "#role-owner").await, text_of(&browser, "#role-state").await);
        assert!(before.0 == "n1" || !before.1.contains("online"), "the move looked done at once: {before:?}");
        let owner = wait_text(&browser, "#role-owner", Duration::from_secs(30), |t| t == "n3").await;
        assert_eq!(owner, "n3", "the owner did not change live");
        let state = wait_text(&browser, "#role-state", Duration::from_secs(10), |t| t.contains("online")).await;
        assert!(state.contains("online"), "{state}");
        let mark = browser.execute("return window.haloMark;", vec![]).await.expect("read mark");
        assert_eq!(mark, "same page", "the page was reloaded");
        assert!(text_of(&browser, "#live").await.starts_with("live updates: on"));
        assert!(text_of(&browser, "#role").await.contains("role web"), "the history shows the move");
        screenshot(&browser, "role").await;

        // The node page, and the events page filtered to one role.
        browser.goto(&format!("{base}/console/nodes/n3")).await.expect("goto");
        let node = wait_text(&browser, "#node", Duration::from_secs(5), |t| t.contains("web")).await;
        assert!(node.contains("up") && node.contains("127.165.2.3:7401") && node.contains(" ms"), "{node}");
        screenshot(&browser, "node").await;
        browser.goto(&format!("{base}/console/events?kind=role&q=web")).await.expect("goto");
        let events = wait_text(&browser, "#events", Duration::from_secs(5), |t| t.contains("web")).await;
        assert!(!events.contains("odd") && !events.contains("joined"), "the filter let others through: {events}");
        screenshot(&browser, "events").await;

        // Logging out ends the session.
        browser.find(Locator::Css("header form button")).await.expect("log out").click().await.expect("click");
        browser.goto(&format!("{base}/console/")).await.expect("goto");
        assert_eq!(browser.current_url().await.expect("url").path(), "/console/login");
        browser.close().await.expect("close");
    });
    assert_eq!(c.role("web").expect("web")["owner"], "n3");
    assert_eq!(c.role_processes("web").len(), 1, "web runs exactly once");
}

/// Log in with `token`; the session cookie (`halo_session=ID`) the console hands out.
async fn log_in(client: &reqwest::Client, base: &str, token: &str) -> String {
    let answer = client
        .post(format!("{base}/console/login"))
        .header("content-type", FORM)
        .body(format!("token={token}"))
        .send()
        .await
        .expect("answer");
    let status = answer.status();
    let set = answer.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(set) = set.filter(|_| status == 303) else {
        panic!("login refused: {status} {}", answer.text().await.unwrap_or_default());
    };
    set.split(';').next().expect("cookie pair").to_string()
}

/// Without the token, the console gives nothing away and changes nothing; a form posted from
/// another site is refused even with the cookie.
fn refuses_requests_without_the_token(c: &Cluster, rt: &tokio::runtime::Runtime, base: &str, token: &str) {
    rt.block_on(async {
        let http = https(None);
        let no_redirects = reqwest::Client::builder()
            .tls_backend_preconfigured(halo_security::tls::unverified_client_config_with(None).expect("tls"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        for path in ["/console/", "/console/roles/web", "/console/events"] {
            let r = no_redirects.get(format!("{base}{path}")).send().await.expect("answer");
            assert_eq!(r.status(), 303, "{path}");
            assert_eq!(r.headers()["location"], "/console/login");
            let body = r.text().await.unwrap_or_default();
            assert!(!body.contains("n1") && !body.contains("web"), "{path} leaked: {body}");
        }
        let wrong = format!("halo_session={}", "0".repeat(64));
        for cookie in [None, Some(wrong.as_str())] {
            let mut post =
                http.post(format!("{base}/console/roles/web/stop")).header("content-type", FORM).body("confirm=yes");
            let mut stream = http.get(format!("{base}/console/stream"));
            if let Some(cookie) = cookie {
                post = post.header("cookie", cookie);
                stream = stream.header("cookie", cookie);
            }
            assert_eq!(post.send().await.expect("answer").status(), 401);
            assert_eq!(stream.send().await.expect("answer").status(), 401);
        }
        // The token itself is no session: the cookie holds a random id the agent handed out.
        let raw = http
            .post(format!("{base}/console/roles/web/stop"))
            .header("cookie", format!("halo_session={token}"))
            .header("content-type", FORM)
            .body("confirm=yes")
            .send()
            .await
            .expect("answer");
        assert_eq!(raw.status(), 401, "the raw token worked as a session");
        let cookie = log_in(&no_redirects, base, token).await;
        assert!(!cookie.contains(token), "the session cookie carries the token: {cookie}");
        let foreign = http
            .post(format!("{base}/console/roles/web/stop"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .header("content-type", FORM)
            .body("confirm=yes")
            .send()
            .await
            .expect("answer");
        assert_eq!(foreign.status(), 403);
        // Without confirmation a stop only asks.
        let asked = http
            .post(format!("{base}/console/roles/web/stop"))
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body("to=")
            .send()
            .await
            .expect("answer");
        assert_eq!(asked.status(), 200);
        assert!(asked.text().await.unwrap_or_default().contains("Stop role web?"));
        // A viewer's session shows the pages without their buttons, and cannot act.
        let out = c.halo(&["token", "create", "desk", "--role", "viewer"]);
        assert!(out.status.success(), "{}", text(&out));
        let viewer_token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let viewer = log_in(&no_redirects, base, &viewer_token).await;
        let page =
            http.get(format!("{base}/console/roles/web")).header("cookie", &viewer).send().await.expect("answer");
        let page = page.text().await.unwrap_or_default();
        assert!(page.contains("web") && !page.contains("/console/roles/web/stop"), "a viewer sees actions: {page}");
        let stop = http
            .post(format!("{base}/console/roles/web/stop"))
            .header("cookie", &viewer)
            .header("content-type", FORM)
            .body("confirm=yes")
            .send()
            .await
            .expect("answer");
        assert_eq!(stop.status(), 403);
        // Logging out ends the session on the agent, not only in the browser.
        let out = no_redirects.post(format!("{base}/console/logout")).header("cookie", &viewer).send().await;
        assert_eq!(out.expect("answer").status(), 303);
        let after =
            no_redirects.get(format!("{base}/console/")).header("cookie", &viewer).send().await.expect("answer");
        assert_eq!(after.status(), 303, "the session outlived its logout");
        // Every console page forbids scripts other than its own.
        let login = http.get(format!("{base}/console/login")).send().await.expect("answer");
        let csp = login.headers()["content-security-policy"].to_str().expect("csp").to_string();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    });
    let web = c.role("web").expect("web");
    assert_eq!(
        (web["state"].as_str(), web["owner"].as_str()),
        (Some("online"), Some("n1")),
        "a refused request changed web"
    );
}
