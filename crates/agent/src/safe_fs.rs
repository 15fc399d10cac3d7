//! Files halo writes as root where others can write too (shared storage, probe paths): every
//! step goes through a directory handle and refuses a symbolic link (`O_NOFOLLOW`), so a link
//! planted there cannot make halo create, truncate or lock a file elsewhere. The directory
//! the admin configured (`shared_storage`, a probe path) is taken as given; what halo makes
//! inside it is not.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// A directory halo made (or found) inside a configured one, held open.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn error(path: &Path, e: Errno) -> io::Error {
    let why = match e {
        Errno::ELOOP => "is a symbolic link, which halo does not follow here".to_string(),
        Errno::ENOTDIR => "is not a directory".to_string(),
        other => other.desc().to_string(),
    };
    io::Error::new(io::Error::from(e).kind(), format!("{}: {why}", path.display()))
}

fn plain_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{name}' is not a plain file name")));
    }
    Ok(name)
}

impl Dir {
    /// `root/name`, made (0700) if `create` and missing. `name` must be a plain name, and not
    /// a symbolic link.
    pub fn under(root: &Path, name: &str, create: bool) -> io::Result<Dir> {
        let name = plain_name(name)?;
        let path = root.join(name);
        let root_fd = nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| error(root, e))?;
        if create {
            match mkdirat(&root_fd, name, Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(error(&path, e)),
            }
        }
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let fd = openat(&root_fd, name, flags, Mode::empty()).map_err(|e| {
            // With O_DIRECTORY, a link is reported as "not a directory": say which it is.
            let link = nix::sys::stat::fstatat(&root_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK);
            error(&path, if link { Errno::ELOOP } else { e })
        })?;
        Ok(Dir { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, name: &str, flags: OFlag) -> io::Result<File> {
        let name = plain_name(name)?;
        let fd = openat(&self.fd, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|e| error(&self.path.join(name), e))?;
        Ok(File::from(fd))
    }

    /// Create or truncate `name` (0600) for writing.
    pub fn create(&self, name: &str) -> io::Result<File> {
        self.open(name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC)
    }

    /// Open `name` for reading and writing, creating it (0600) if missing.
    pub fn open_rw(&self, name: &str) -> io::Result<File> {
        self.open(name, OFlag::O_RDWR | OFlag::O_CREAT)
    }

    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut self.open(name, OFlag::O_RDONLY)?, &mut bytes)?;
        Ok(bytes)
    }

    /// Remove `name` if it is there (a link is removed itself, never what it points to).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let name = plain_name(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(error(&self.path.join(name), e)),
        }
    }

    /// Rename `from` to `to` inside this directory (replacing `to`, even a link, not its target).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (plain_name(from)?, plain_name(to)?);
        renameat(&self.fd, from, &self.fd, to).map_err(|e| error(&self.path.join(to), e))
    }

    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| error(&self.path, e))
    }

    /// Remove this directory if it is empty (others may still have files in it).
    pub fn remove_if_empty(root: &Path, name: &str) {
        let Ok(name) = plain_name(name) else { return };
        if let Ok(root_fd) =
            nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        {
            let _ = unlinkat(&root_fd, name, UnlinkatFlags::RemoveDir);
        }
    }
}

/// Remove `path`, a file in a directory halo made (its parent), without following a link in
/// place of that directory.
pub fn remove_in_own_dir(path: &Path) -> io::Result<()> {
    let (dir, file) = own_dir_of(path)?;
    dir.remove(file)
}

/// Open `path`, a file in a directory halo made (its parent), for reading, without following a
/// link in place of either.
pub fn open_in_own_dir(path: &Path) -> io::Result<File> {
    let (dir, file) = own_dir_of(path)?;
    dir.open(file, OFlag::O_RDONLY)
}

fn own_dir_of(path: &Path) -> io::Result<(Dir, &str)> {
    let bad =
        || io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file in a directory", path.display()));
    let file = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    let dir = path.parent().ok_or_else(bad)?;
    let (root, name) = (dir.parent().ok_or_else(bad)?, dir.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?);
    Ok((Dir::under(root, name, false)?, file))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn planted_links_are_refused_and_never_followed() {
        let shared = tempfile::tempdir().expect("dir");
        let victim = tempfile::tempdir().expect("dir");
        std::fs::write(victim.path().join("precious"), "keep").expect("file");

        // The directory halo makes is a link to elsewhere: refused.
        std::os::unix::fs::symlink(victim.path(), shared.path().join(".halo-test")).expect("link");
        let refused = Dir::under(shared.path(), ".halo-test", true).err().expect("refused");
        assert!(refused.to_string().contains("symbolic link"), "{refused}");

        // A file inside is a link to a precious file: refused, the file kept.
        let dir = Dir::under(shared.path(), ".halo-own", true).expect("made");
        std::os::unix::fs::symlink(victim.path().join("precious"), dir.path().join("probe")).expect("link");
        assert!(dir.create("probe").is_err());
        assert!(dir.open_rw("probe").is_err());
        assert!(dir.read("probe").is_err());
        assert!(open_in_own_dir(&dir.path().join("probe")).is_err());
        // Removing removes the link, not the file.
        dir.remove("probe").expect("removed");
        assert_eq!(std::fs::read_to_string(victim.path().join("precious")).expect("kept"), "keep");

        // Plain files work as usual, 0600.
        dir.create("probe").and_then(|mut f| f.write_all(b"ok")).expect("written");
        assert_eq!(dir.read("probe").expect("read"), b"ok");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("probe")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        dir.rename("probe", "kept").expect("renamed");
        let mut read = String::new();
        std::io::Read::read_to_string(&mut open_in_own_dir(&dir.path().join("kept")).expect("open"), &mut read)
            .expect("read");
        assert_eq!(read, "ok");
        // Through a linked directory: refused.
        std::os::unix::fs::symlink(dir.path(), shared.path().join(".halo-link")).expect("link");
        assert!(open_in_own_dir(&shared.path().join(".halo-link").join("kept")).is_err());
        assert!(Dir::under(shared.path(), "../x", true).is_err());
        assert!(dir.create("a/b").is_err());
    }
}
