//! QEMU's command line for one guest (`-M microvm`): pure, so it is tested without QEMU.
//! Paths are the ones QEMU sees inside its sandbox (see [`super::vm`]).

/// Which accelerator runs guests: the host's KVM, or QEMU's software emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Where the guest's RAM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Memory {
    /// Anonymous memory: a guest booted for itself.
    Anonymous,
    /// A file shared with the host: a snapshot's template, whose RAM stays in the file.
    SharedFile(String),
    /// A snapshot's RAM file mapped privately: pages are read on demand and copied on write,
    /// so clones restored from one file share what they do not change.
    PrivateFile(String),
}

/// Inside QEMU's sandbox.
pub(crate) const GUEST_DIR: &str = "/guest";
pub(crate) const RUN_DIR: &str = "/vm";
pub(crate) const SNAPSHOT_DIR: &str = "/snapshot";
pub(crate) const SHARE_DIR: &str = "/share";
/// The host ⇄ guest channels: one virtio-serial port each, a unix socket on the host.
pub(crate) const PORTS: [&str; 4] = ["agent", "control", "stdout", "stderr"];
/// The 9p tag of the folder the guest's `/code` and `/opt` come from.
pub(crate) const SHARE_TAG: &str = "ignis.share";
/// The guest's address on QEMU's user-mode network, its gateway and resolver.
const GUEST_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

#[derive(Debug, Clone)]
pub(crate) struct VmConfig {
    pub accel: Accel,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub tmp_mb: u32,
    pub memory: Memory,
    /// A user-mode network card (outbound networking); none otherwise.
    pub network: bool,
    /// A QMP monitor socket (`qmp`): needed to save or restore a snapshot.
    pub qmp: bool,
    /// Waits for a migration stream (a restore) instead of booting.
    pub incoming: bool,
}

/// The socket of one channel, inside the sandbox.
pub(crate) fn socket(name: &str) -> String {
    format!("{RUN_DIR}/{name}.sock")
}

/// The kernel's command line. `tsc=reliable`: under software emulation the kernel's
/// clocksource watchdog, which compares the TSC with the (late) timer ticks, would mark the
/// TSC unstable and fall back to jiffies, a 4 ms clock read by system calls; the emulated
/// TSC is the host's, steady. (Under KVM the guest uses kvm-clock.)
///
/// `noapictimer`, under software emulation only: the emulated CPU has no TSC-deadline
/// timer, so the kernel would measure the local APIC timer against the PIT for 200 ms of
/// every boot (a calibration and its check); the guest's timer is the PIT instead. Under
/// KVM the host CPU's TSC-deadline timer needs no calibration.
pub(crate) fn kernel_args(c: &VmConfig) -> String {
    let mut args = format!(
        "console=ttyS0 root=/dev/vda ro rootfstype=ext4 init=/sbin/ignis-agent quiet panic=-1 random.trust_cpu=on tsc=reliable ignis.tmp_mb={}",
        c.tmp_mb
    );
    if c.accel == Accel::Tcg {
        args.push_str(" noapictimer");
    }
    if c.network {
        args.push(' ');
        args.push_str(GUEST_IP);
    }
    args
}

/// Every argument after the program's name.
pub(crate) fn args(c: &VmConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &[&str]| a.extend(s.iter().map(|x| (*x).to_owned()));
    let machine = match c.memory {
        Memory::Anonymous => "microvm,acpi=off".to_owned(),
        Memory::SharedFile(_) | Memory::PrivateFile(_) => "microvm,acpi=off,memory-backend=mem".to_owned(),
    };
    push(&["-M", &machine]);
    match c.accel {
        // A bounded translation cache: QEMU's default reserves far more than a small guest needs.
        Accel::Tcg => push(&["-accel", "tcg,tb-size=64", "-cpu", "max"]),
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
    }
    push(&[
        "-m",
        &format!("{}M", c.memory_mb),
        "-smp",
        &c.vcpus.max(1).to_string(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        "-kernel",
        &format!("{GUEST_DIR}/vmlinux"),
        "-append",
        &kernel_args(c),
        "-drive",
        &format!("id=root,file={GUEST_DIR}/rootfs.ext4,format=raw,if=none,readonly=on"),
        "-device",
        "virtio-blk-device,drive=root",
        "-device",
        "virtio-serial-device,max_ports=8",
    ]);
    for name in PORTS {
        push(&[
            "-chardev",
            &format!("socket,id={name},path={}", socket(name)),
            "-device",
            &format!("virtserialport,chardev={name},name=ignis.{name}"),
        ]);
    }
    push(&[
        "-fsdev",
        &format!("local,id=share,path={SHARE_DIR},security_model=none,readonly=on,multidevs=remap"),
        "-device",
        &format!("virtio-9p-device,fsdev=share,mount_tag={SHARE_TAG}"),
    ]);
    if c.network {
        push(&[
            "-netdev",
            "user,id=net",
            "-device",
            "virtio-net-device,netdev=net",
        ]);
    }
    match &c.memory {
        Memory::Anonymous => {}
        Memory::SharedFile(path) => push(&[
            "-object",
            &format!(
                "memory-backend-file,id=mem,size={}M,mem-path={path},share=on",
                c.memory_mb
            ),
        ]),
        Memory::PrivateFile(path) => push(&[
            "-object",
            &format!(
                "memory-backend-file,id=mem,size={}M,mem-path={path},share=off,readonly=on,rom=off",
                c.memory_mb
            ),
        ]),
    }
    if c.qmp {
        push(&[
            "-chardev",
            &format!("socket,id=qmp,path={}", socket("qmp")),
            "-mon",
            "chardev=qmp,mode=control",
        ]);
    }
    if c.incoming {
        push(&["-incoming", "defer"]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            accel: Accel::Tcg,
            memory_mb: 256,
            vcpus: 2,
            tmp_mb: 64,
            memory: Memory::Anonymous,
            network: false,
            qmp: false,
            incoming: false,
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn limits_become_the_guest_s_memory_and_cpus() {
        let a = args(&config());
        assert_eq!(after(&a, "-m"), ["256M"]);
        assert_eq!(after(&a, "-smp"), ["2"]);
        assert_eq!(after(&a, "-M"), ["microvm,acpi=off"]);
        assert!(kernel_args(&config()).contains("ignis.tmp_mb=64"));
    }

    #[test]
    fn the_guest_keeps_the_tsc_as_its_clock() {
        // Without it, TCG's late timer ticks make the kernel fall back to a 4 ms jiffies clock.
        assert!(kernel_args(&config()).split(' ').any(|a| a == "tsc=reliable"));
    }

    #[test]
    fn an_emulated_guest_skips_the_apic_timer_s_calibration() {
        let has = |c: &VmConfig| kernel_args(c).split(' ').any(|a| a == "noapictimer");
        assert!(has(&config()), "TCG: the PIT is the timer, nothing to calibrate");
        let kvm = VmConfig {
            accel: Accel::Kvm,
            ..config()
        };
        assert!(!has(&kvm), "KVM: the host CPU's TSC-deadline timer");
    }

    #[test]
    fn the_share_s_folders_are_where_the_sandbox_shows_a_package_and_layers() {
        use ignis_sandbox::mount::{GUEST_SHARE_CODE, GUEST_SHARE_OPT};
        let a = args(&config());
        assert!(after(&a, "-fsdev")[0].contains(&format!("path={SHARE_DIR},")));
        for (folder, name) in [(GUEST_SHARE_CODE, "code"), (GUEST_SHARE_OPT, "opt")] {
            assert_eq!(
                std::path::Path::new(folder),
                std::path::Path::new(SHARE_DIR).join(name)
            );
        }
    }

    #[test]
    fn no_network_means_no_network_card() {
        let a = args(&config());
        assert!(after(&a, "-netdev").is_empty());
        assert!(!kernel_args(&config()).contains("ip="));
        let c = VmConfig {
            network: true,
            ..config()
        };
        assert_eq!(after(&args(&c), "-netdev"), ["user,id=net"]);
        assert!(kernel_args(&c).contains("ip=10.0.2.15"));
    }

    #[test]
    fn every_channel_is_a_named_port_on_a_socket() {
        let a = args(&config());
        let ports = after(&a, "-device");
        for name in PORTS {
            assert!(ports.contains(&format!("virtserialport,chardev={name},name=ignis.{name}").as_str()));
        }
        assert!(after(&a, "-chardev").contains(&"socket,id=agent,path=/vm/agent.sock"));
    }

    #[test]
    fn a_restore_maps_the_snapshot_s_ram_privately_and_waits_for_its_state() {
        let c = VmConfig {
            memory: Memory::PrivateFile("/snapshot/ram".to_owned()),
            qmp: true,
            incoming: true,
            ..config()
        };
        let a = args(&c);
        assert_eq!(after(&a, "-M"), ["microvm,acpi=off,memory-backend=mem"]);
        let object = after(&a, "-object");
        assert_eq!(object.len(), 1);
        assert!(object[0].contains("mem-path=/snapshot/ram,share=off,readonly=on"));
        assert_eq!(after(&a, "-incoming"), ["defer"]);
        assert_eq!(after(&a, "-mon"), ["chardev=qmp,mode=control"]);
        let template = VmConfig {
            memory: Memory::SharedFile("/vm/ram".to_owned()),
            qmp: true,
            ..config()
        };
        assert!(after(&args(&template), "-object")[0].contains("share=on"));
        assert!(after(&args(&template), "-incoming").is_empty());
    }

    #[test]
    fn kvm_uses_the_host_s_cpu() {
        let c = VmConfig {
            accel: Accel::Kvm,
            ..config()
        };
        assert_eq!(after(&args(&c), "-accel"), ["kvm"]);
        assert_eq!(after(&args(&c), "-cpu"), ["host"]);
    }
}
