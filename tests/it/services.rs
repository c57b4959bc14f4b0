//! Real Redis and PostgreSQL servers for the tests: the one `REDIS_URL` /
//! `DATABASE_URL` names when set, else a server of our own on a free port in
//! a temporary folder, stopped when the handle drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[cfg(feature = "redis")]
/// A redis-server the test started, or the one `REDIS_URL` names.
pub struct Redis {
    pub url: String,
    own: Option<OwnRedis>,
}

#[cfg(feature = "redis")]
struct OwnRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
    appendonly: bool,
}

#[cfg(feature = "redis")]
impl Redis {
    /// `REDIS_URL` if set, else a fresh server.
    pub fn shared_or_own() -> Redis {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Redis { url, own: None },
            _ => Redis::own(false),
        }
    }

    /// A server of this test's own, keeping an append-only file when
    /// `appendonly` (so it can restart without losing acknowledged writes).
    pub fn own(appendonly: bool) -> Redis {
        let port = free_port();
        let dir = crate::support::temp_dir(&format!("redis-{port}"));
        let child = start_redis(port, &dir, appendonly);
        Redis {
            url: format!("redis://127.0.0.1:{port}"),
            own: Some(OwnRedis {
                child,
                port,
                dir,
                appendonly,
            }),
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// folder. Only for a server of the test's own.
    pub fn restart(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("restart needs a server of our own");
        own.child.kill().ok();
        own.child.wait().ok();
        own.child = start_redis(own.port, &own.dir, own.appendonly);
    }
}

#[cfg(feature = "redis")]
impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(own) = self.own.as_mut() {
            own.child.kill().ok();
            own.child.wait().ok();
            std::fs::remove_dir_all(&own.dir).ok();
        }
    }
}

#[cfg(feature = "redis")]
fn start_redis(port: u16, dir: &Path, appendonly: bool) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", if appendonly { "yes" } else { "no" }])
        // Every write on disk before it is acknowledged.
        .args(["--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/setup-tests installs it)");
    wait_for(
        || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        },
        "redis-server",
    );
    child
}

#[cfg(feature = "postgres")]
/// A PostgreSQL server the test started, or the one `DATABASE_URL` names.
pub struct Postgres {
    pub url: String,
    own: Option<(Child, PathBuf)>,
}

#[cfg(feature = "postgres")]
impl Postgres {
    /// `DATABASE_URL` if set, else a fresh cluster (initdb) of our own.
    pub fn shared_or_own() -> Postgres {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                return Postgres { url, own: None };
            }
        }
        Self::own(&postgres_bin(), false)
    }

    /// `PGVECTOR_DATABASE_URL` if set, else a fresh cluster of our own
    /// with the pgvector extension: PostgreSQL 16 from the `pgserver`
    /// wheel (`scripts/setup-tests` installs it; Debian has no pgvector).
    pub fn with_vector() -> Postgres {
        if let Ok(url) = std::env::var("PGVECTOR_DATABASE_URL") {
            if !url.is_empty() {
                return Postgres { url, own: None };
            }
        }
        Self::own(&pgserver_bin(), true)
    }

    /// A fresh cluster of the server in `bin` on a free port; with `copy`,
    /// the installation is copied beside it first, so that the `postgres`
    /// user can run it when we are root.
    fn own(bin: &Path, copy: bool) -> Postgres {
        let port = free_port();
        // Under /tmp: the server's user must be able to reach the folder.
        let dir = std::env::temp_dir().join(format!("statewise-pg-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = match copy && is_root() {
            true => {
                // The wheel's layout, kept: its binaries find their
                // libraries at $ORIGIN/../../../pgserver.libs.
                let package = bin.ancestors().nth(2).expect("pgserver/pginstall/bin");
                let site = package.parent().expect("the wheel's folder");
                let copy = dir.join("site");
                std::fs::create_dir_all(copy.join("pgserver")).unwrap();
                for (from, to) in [
                    (package.join("pginstall"), copy.join("pgserver/pginstall")),
                    (site.join("pgserver.libs"), copy.join("pgserver.libs")),
                ] {
                    let ok = Command::new("cp")
                        .arg("-a")
                        .arg(&from)
                        .arg(&to)
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false);
                    assert!(ok, "copying {} to {}", from.display(), to.display());
                }
                copy.join("pgserver/pginstall/bin")
            }
            false => bin.to_path_buf(),
        };
        let as_server = |program: &str| -> Command {
            // PostgreSQL refuses to run as root: run it as `postgres`.
            if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            }
        };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown of {} to the postgres user", dir.display());
        }
        let data = dir.join("data");
        let out = as_server("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs (scripts/setup-tests installs PostgreSQL)");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = as_server("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(&dir)
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres runs");
        let ready = bin.join("pg_isready");
        wait_for(
            || {
                Command::new(&ready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .ok()?
                    .success()
                    .then_some(())
            },
            "postgres",
        );
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            own: Some((child, dir)),
        }
    }
}

#[cfg(feature = "postgres")]
impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((child, dir)) = self.own.as_mut() {
            // SIGKILL of `runuser` would leave postgres running: ask the
            // postmaster itself to stop (its pid is the data folder's lock).
            let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).ok();
            if let Some(pid) = pid.as_deref().and_then(|p| p.lines().next()) {
                Command::new("kill").args(["-INT", pid]).status().ok();
            }
            child.wait().ok();
            std::fs::remove_dir_all(&*dir).ok();
        }
    }
}

#[cfg(feature = "postgres")]
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[cfg(feature = "postgres")]
/// The `bin` folder of the `pgserver` wheel's PostgreSQL (with pgvector):
/// `STATEWISE_PGSERVER` names the wheel's `pgserver` folder, else Python
/// is asked where it is.
fn pgserver_bin() -> PathBuf {
    let dir = std::env::var("STATEWISE_PGSERVER")
        .ok()
        .filter(|d| !d.is_empty())
        .or_else(|| {
            let python = std::env::var("STATEWISE_PYTHON").unwrap_or_else(|_| "python3".into());
            let out = Command::new(python)
                .args([
                    "-c",
                    "import os, pgserver; print(os.path.dirname(pgserver.__file__))",
                ])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        });
    let bin = PathBuf::from(
        dir.expect("the pgserver wheel (scripts/setup-tests installs it: pip install pgserver)"),
    )
    .join("pginstall/bin");
    assert!(
        bin.join("postgres").is_file(),
        "no postgres in {}",
        bin.display()
    );
    bin
}

#[cfg(feature = "postgres")]
/// The folder of `initdb` and `postgres`: on the PATH, or where Debian's
/// packages put them (/usr/lib/postgresql/<version>/bin).
fn postgres_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file());
    on_path
        .map(|d| std::fs::canonicalize(d.join("initdb")).ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or(d))
        .or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .filter(|b| b.join("initdb").is_file())
                .collect();
            versions.sort();
            versions.pop()
        })
        .expect("PostgreSQL's initdb, on the PATH or in /usr/lib/postgresql/*/bin (scripts/setup-tests installs it)")
}

fn wait_for(mut ready: impl FnMut() -> Option<()>, what: &str) {
    let start = Instant::now();
    while ready().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
