//! A real kernel FUSE mount of an emulator bucket, run as a `cosmount --foreground` child
//! process. The guard unmounts (`fusermount3 -u`) and kills the process on drop, also when the
//! test panics. Readiness is polled in /proc/self/mountinfo, never slept for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestEmulator;

pub struct Mount {
    pub mountpoint: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == p))
}

/// The `cosmount` binary built with the tests.
pub fn cosmount_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cosmount")
}

impl Mount {
    /// Mounts the emulator's default bucket with `extra` options added to the command line.
    pub fn start(emu: &TestEmulator, extra: &[&str]) -> Mount {
        Self::start_with_env(emu, extra, &[])
    }

    /// Like `start`, with extra environment variables for the mount process.
    pub fn start_with_env(emu: &TestEmulator, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        Self::start_at(emu, extra, env, dir, mountpoint)
    }

    pub fn start_at(
        emu: &TestEmulator,
        extra: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        mountpoint: PathBuf,
    ) -> Mount {
        let mut cmd = Self::command(emu, &dir, env);
        cmd.arg(emu.bucket()).arg(&mountpoint).args(extra);
        Self::spawn(cmd, dir, mountpoint)
    }

    /// Mounts every bucket of the emulator (`--all-buckets`), with `extra` options and `env`
    /// added.
    pub fn start_all_buckets(emu: &TestEmulator, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let mut cmd = Self::command(emu, &dir, env);
        cmd.arg("--all-buckets").arg(&mountpoint).args(extra);
        Self::spawn(cmd, dir, mountpoint)
    }

    /// A foreground cosmount for the emulator, with its credentials in the environment; the
    /// caller adds what to mount where.
    fn command(emu: &TestEmulator, dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(cosmount_bin());
        cmd.args(["--endpoint", &emu.endpoint(), "--foreground"])
            .args(["--cache-dir", &dir.path().join("cache").to_string_lossy()])
            .args(["--retry-base-delay", "5ms"])
            .env("COS_SECRET_ID", &emu.config.secret_id)
            .env("COS_SECRET_KEY", emu.config.secret_key.expose())
            .env_remove("COS_SESSION_TOKEN")
            .env(
                "RUST_LOG",
                std::env::var("COSMOUNT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(t) = &emu.config.session_token {
            cmd.env("COS_SESSION_TOKEN", t.expose());
        }
        cmd.envs(env.iter().copied());
        cmd
    }

    /// Runs `cmd` (a foreground cosmount with every argument its caller chose) and waits for
    /// the mount on `mountpoint`; its output goes to the guard's log.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir, mountpoint: PathBuf) -> Mount {
        let log = dir.path().join("cosmount.log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        let child = cmd.spawn().expect("spawn cosmount");
        let mut m = Mount {
            mountpoint,
            log,
            child: Some(child),
            _dir: dir,
        };
        m.wait_mounted();
        m
    }

    /// Takes charge of a mount that a daemonised cosmount made on `mountpoint` (unmounted on
    /// drop like the others; the daemon exits by itself then).
    pub fn adopt(dir: tempfile::TempDir, mountpoint: PathBuf) -> Mount {
        assert!(
            is_mounted(&mountpoint),
            "{} is not mounted",
            mountpoint.display()
        );
        Mount {
            log: dir.path().join("cosmount.log"),
            mountpoint,
            child: None,
            _dir: dir,
        }
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&self.mountpoint) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "cosmount exited with {status} before mounting:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Unmounts with `fusermount3 -u` and waits for the process to exit by itself.
    pub fn unmount(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
            if !is_mounted(&self.mountpoint) {
                break;
            }
            assert!(Instant::now() < deadline, "could not unmount");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("cosmount did not exit after unmount:\n{}", self.log_text());
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// `kill -9` the mount process (a crash), then clean up the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(150)..];
            eprintln!(
                "---- cosmount log (last {} lines) ----\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
            if is_mounted(&self.mountpoint) {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mountpoint)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
