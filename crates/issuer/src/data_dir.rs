//! The data directory's permissions: it holds private signing keys and secret keys, so on Unix it
//! is created `0700` and its database files `0600`; a directory that others may write is refused,
//! and one that others may read is accepted with a warning.

use std::path::Path;

use super::error::IssuerError;

/// Creates `dir` (private to its owner) if it is missing, and checks who else may use it.
pub(crate) fn prepare(dir: &Path) -> Result<(), IssuerError> {
    if !dir.exists() {
        create_private_dir(dir).map_err(|error| {
            IssuerError::internal(format!(
                "cannot create the data directory {}: {error}",
                dir.display()
            ))
        })?;
    }
    let metadata = std::fs::metadata(dir).map_err(|error| {
        IssuerError::internal(format!(
            "cannot read the data directory {}: {error}",
            dir.display()
        ))
    })?;
    if !metadata.is_dir() {
        return Err(IssuerError::internal(format!(
            "the data directory {} is not a directory",
            dir.display()
        )));
    }
    check_mode(dir, &metadata)
}

/// Creates the file `path`, private to its owner, unless it exists (so that the database is never
/// readable by others, even for a moment).
pub(crate) fn create_private_file(path: &Path) -> Result<(), IssuerError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|error| {
        IssuerError::internal(format!("cannot create {}: {error}", path.display()))
    })
}

/// Makes the database and the files SQLite keeps beside it (`-journal`, `-wal`, `-shm`), where
/// they exist, private to their owner: a database left readable by an earlier version is fixed.
pub(crate) fn make_database_files_private(database: &Path) -> Result<(), IssuerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut paths = vec![database.to_path_buf()];
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            paths.push(name.into());
        }
        for path in paths {
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if metadata.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |error| {
                        IssuerError::internal(format!(
                            "cannot make {} private (chmod 600): {error}",
                            path.display()
                        ))
                    },
                )?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = database;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // The mode above is subject to the umask; this one is not.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn check_mode(dir: &Path, metadata: &std::fs::Metadata) -> Result<(), IssuerError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and every user",
            (true, false) => "its group",
            _ => "every user",
        };
        return Err(IssuerError::internal(format!(
            "the data directory {} (mode {mode:04o}) may be written by {who}: it holds private \
             signing keys, so the issuer refuses it; make it private with `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = ?dir,
            mode = %format_args!("{mode:04o}"),
            "the issuer's data directory may be read by other users; its database is private, \
             but `chmod 700` the directory to hide it"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_dir: &Path, _metadata: &std::fs::Metadata) -> Result<(), IssuerError> {
    Ok(())
}
