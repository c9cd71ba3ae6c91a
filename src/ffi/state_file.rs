//! The aggregate state file, handled as a file that holds secrets: script text can carry
//! credentials, and Fluent Bit often runs as root. Written with mode 0600 through a fresh
//! temporary file (random name, `O_EXCL`) in the same folder, fsynced, then renamed into
//! place; read only when it is a regular file owned by this user and not writable by
//! others; refused in a folder others can write without the sticky bit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder a state file lives in (`.` for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Start-up check: the folder must not let other users plant files in it (world-writable
/// without the sticky bit), and an existing state file must be one we would read.
pub fn check_location(path: &str) -> Result<(), String> {
    let dir = folder_of(Path::new(path));
    let meta = fs::metadata(&dir).map_err(|e| format!("folder '{}': {e}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "folder '{}' can be written by any user and has no sticky bit, so another user \
             could replace the state file; use a folder only Fluent Bit's user can write \
             (e.g. under storage.path)",
            dir.display()
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(m) => trusted(&m).map_err(|why| format!("'{path}' {why}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("'{path}': {e}")),
    }
}

/// Why a file's metadata makes it untrustworthy, if it does.
fn trusted(m: &fs::Metadata) -> Result<(), &'static str> {
    if !m.file_type().is_file() {
        return Err("is not a regular file (a symbolic link, a folder or a device)");
    }
    if m.uid() != effective_uid() {
        return Err("is owned by another user");
    }
    if m.mode() & 0o022 != 0 {
        return Err("can be written by other users");
    }
    Ok(())
}

/// What reading the state file found.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: nothing to restore.
    Absent,
    Text(String),
    /// A file is there but is not to be trusted; it is left untouched.
    Refused(String),
}

/// Reads the state file without following a symbolic link, and only if it is trusted
/// (checked on the opened file, so it cannot be swapped between check and read).
pub fn load(path: &str) -> io::Result<Loaded> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Absent),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Loaded::Refused("is a symbolic link".into()))
        }
        Err(e) => return Err(e),
    };
    if let Err(why) = trusted(&file.metadata()?) {
        return Ok(Loaded::Refused(why.into()));
    }
    let mut text = String::new();
    (&file).read_to_string(&mut text)?;
    Ok(Loaded::Text(text))
}

/// Replaces the state file with `text`: a new 0600 file under a random name in the same
/// folder (never through an existing path), fsynced, renamed over the old one, and the
/// folder fsynced so the rename survives a crash.
pub fn save(path: &str, text: &str) -> io::Result<()> {
    let target = Path::new(path);
    let dir = folder_of(target);
    let mut tmp = tempfile::Builder::new()
        .prefix(".pssession-state-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    File::open(&dir)?.sync_all()
}

/// Removes the state file once its rows are back in the aggregate.
pub fn remove(path: &str) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn saved_file_is_private_and_round_trips() {
        let d = dir();
        let p = d.path().join("rows.state");
        let p = p.to_str().unwrap();
        save(p, "one\n").unwrap();
        assert_eq!(fs::metadata(p).unwrap().mode() & 0o777, 0o600);
        assert!(matches!(load(p).unwrap(), Loaded::Text(t) if t == "one\n"));
        save(p, "two\n").unwrap();
        assert!(matches!(load(p).unwrap(), Loaded::Text(t) if t == "two\n"));
        let leftovers: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let d = dir();
        let victim = d.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let p = d.path().join("rows.state");
        symlink(&victim, d.path().join("rows.state.tmp")).unwrap();
        symlink(&victim, &p).unwrap();
        save(p.to_str().unwrap(), "rows").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_file());
    }

    #[test]
    fn a_symlink_or_loose_file_is_not_read() {
        let d = dir();
        let real = d.path().join("real");
        fs::write(&real, "x").unwrap();
        let link = d.path().join("link");
        symlink(&real, &link).unwrap();
        assert!(matches!(
            load(link.to_str().unwrap()).unwrap(),
            Loaded::Refused(_)
        ));
        fs::set_permissions(&real, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            load(real.to_str().unwrap()).unwrap(),
            Loaded::Refused(_)
        ));
        assert!(check_location(real.to_str().unwrap()).is_err());
        assert!(matches!(
            load(d.path().join("none").to_str().unwrap()).unwrap(),
            Loaded::Absent
        ));
    }

    #[test]
    fn a_shared_folder_without_sticky_bit_is_refused() {
        let d = dir();
        let p = d.path().join("rows.state");
        let p = p.to_str().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_location(p).unwrap_err();
        assert!(e.contains("sticky"), "{e}");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        check_location(p).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        check_location(p).unwrap();
    }
}
