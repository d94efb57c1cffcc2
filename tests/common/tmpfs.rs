//! Small file systems that fill up: a tmpfs of a few MiB mounted on a folder, to see what a
//! node does when its disk is full. Needs root (mount); [`Tmpfs::mount`] says why not, so a
//! test can say it was skipped. Unmounted (lazily) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    dir: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` on `dir` (created if missing).
    pub fn mount(dir: &Path, size_mib: u64) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(dir, &format!("size={size_mib}m"))
    }

    /// Mounts a tmpfs of `size_mib` that holds at most `inodes` files and folders.
    pub fn mount_with_inodes(dir: &Path, size_mib: u64, inodes: u64) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(dir, &format!("size={size_mib}m,nr_inodes={inodes}"))
    }

    /// Lets it hold up to `inodes` files and folders, keeping its files.
    pub fn set_inodes(&self, inodes: u64) -> Result<(), String> {
        let options = format!("remount,nr_inodes={inodes}");
        run("mount", &["-o", &options, &self.dir.to_string_lossy()])
    }

    fn mount_with(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                options,
                "tmpfs",
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Grows (or shrinks) it to `size_mib`, keeping its files.
    pub fn resize(&self, size_mib: u64) -> Result<(), String> {
        let options = format!("remount,size={size_mib}m");
        run("mount", &["-o", &options, &self.dir.to_string_lossy()])
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.dir.to_string_lossy()]);
    }
}
