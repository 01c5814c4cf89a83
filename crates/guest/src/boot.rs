//! What the agent reads at boot: the kernel command line, the virtio-serial ports by name,
//! and the OOM-kill counter of `/proc/vmstat` (the parsing is pure and unit-tested).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `/tmp`'s size when the command line does not say.
pub const DEFAULT_TMP_MB: u64 = 64;
/// The largest `/tmp` the agent accepts (it lives in the guest's memory).
const MAX_TMP_MB: u64 = 1 << 20;

/// What the kernel command line tells the agent.
#[derive(Debug, PartialEq, Eq)]
pub struct Cmdline {
    pub tmp_mb: u64,
}

/// Parses `/proc/cmdline`: `ignis.tmp_mb=N` (a whole number of MiB, 1 or more).
pub fn parse_cmdline(text: &str) -> Result<Cmdline, String> {
    let mut cmdline = Cmdline {
        tmp_mb: DEFAULT_TMP_MB,
    };
    for word in text.split_ascii_whitespace() {
        if let Some(value) = word.strip_prefix("ignis.tmp_mb=") {
            cmdline.tmp_mb = match value.parse::<u64>() {
                Ok(mb) if (1..=MAX_TMP_MB).contains(&mb) => mb,
                _ => {
                    return Err(format!(
                        "ignis.tmp_mb={value:?} must be a whole number of MiB from 1 to {MAX_TMP_MB}"
                    ))
                }
            };
        }
    }
    Ok(cmdline)
}

/// The `oom_kill` counter of `/proc/vmstat` (how many processes the OOM killer killed).
pub fn parse_oom_kills(vmstat: &str) -> Option<u64> {
    vmstat.lines().find_map(|line| {
        let mut words = line.split_ascii_whitespace();
        (words.next() == Some("oom_kill")).then(|| words.next()?.parse().ok())?
    })
}

/// The four ports the host gives the guest.
pub const PORTS: [&str; 4] = ["ignis.agent", "ignis.control", "ignis.stdout", "ignis.stderr"];

/// Maps port names to device files: `listing` is `(entry of /sys/class/virtio-ports, the
/// text of its name file)`; the device of entry `vport0p1` is `/dev/vport0p1`.
pub fn ports_by_name(listing: &[(String, String)]) -> BTreeMap<String, PathBuf> {
    listing
        .iter()
        .filter(|(entry, _)| !entry.is_empty() && !entry.contains('/') && !entry.starts_with('.'))
        .map(|(entry, name)| (name.trim().to_owned(), Path::new("/dev").join(entry)))
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

/// Reads `/sys/class/virtio-ports` until every port of `PORTS` has a name and a device
/// file (names arrive from the host a little after the driver probed), within `deadline`.
pub fn find_ports(deadline: Duration) -> Result<BTreeMap<String, PathBuf>, String> {
    let start = Instant::now();
    loop {
        let mut listing = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in entries.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                listing.push((entry.file_name().to_string_lossy().into_owned(), name));
            }
        }
        let ports = ports_by_name(&listing);
        let missing: Vec<&str> = PORTS
            .iter()
            .copied()
            .filter(|p| !ports.get(*p).is_some_and(|dev| dev.exists()))
            .collect();
        if missing.is_empty() {
            return Ok(ports);
        }
        if start.elapsed() > deadline {
            return Err(format!(
                "virtio-serial ports missing after {deadline:?}: {} (found {:?})",
                missing.join(", "),
                listing
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_gives_tmp_size_or_the_default() {
        assert_eq!(
            parse_cmdline("console=ttyS0 ignis.tmp_mb=32 quiet\n"),
            Ok(Cmdline { tmp_mb: 32 })
        );
        assert_eq!(
            parse_cmdline("console=ttyS0 quiet"),
            Ok(Cmdline {
                tmp_mb: DEFAULT_TMP_MB
            })
        );
        assert_eq!(
            parse_cmdline("ignis.tmp_mb=0"),
            Err(r#"ignis.tmp_mb="0" must be a whole number of MiB from 1 to 1048576"#.into())
        );
        assert!(parse_cmdline("ignis.tmp_mb=12k").is_err());
        // A longer parameter that merely starts alike is not ours.
        assert_eq!(
            parse_cmdline("xignis.tmp_mb=5"),
            Ok(Cmdline {
                tmp_mb: DEFAULT_TMP_MB
            })
        );
    }

    #[test]
    fn vmstat_gives_the_oom_kill_counter() {
        let vmstat = "nr_free_pages 1234\noom_kill 3\npgfault 99\n";
        assert_eq!(parse_oom_kills(vmstat), Some(3));
        assert_eq!(parse_oom_kills("oom_killer 1\n"), None);
        assert_eq!(parse_oom_kills("oom_kill x\n"), None);
        assert_eq!(parse_oom_kills(""), None);
    }

    #[test]
    fn ports_are_found_by_their_name() {
        let listing = vec![
            ("vport0p1".to_owned(), "ignis.agent\n".to_owned()),
            ("vport0p2".to_owned(), "ignis.stdout\n".to_owned()),
            ("vport0p3".to_owned(), String::new()),
        ];
        let ports = ports_by_name(&listing);
        assert_eq!(ports.get("ignis.agent"), Some(&PathBuf::from("/dev/vport0p1")));
        assert_eq!(ports.get("ignis.stdout"), Some(&PathBuf::from("/dev/vport0p2")));
        assert_eq!(ports.len(), 2, "a port without a name is not listed: {ports:?}");
    }
}
