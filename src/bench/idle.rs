//! How this machine's idle CPUs wait: at light load every hop of a request wakes an idle CPU,
//! so this sets the floor of its latency there, as the null-server ceiling shows.

use std::path::Path;

const CPUIDLE_DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";
const HALTPOLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// One line on the idle CPUs, if the kernel says how they wait: the cpuidle driver and, on a
/// KVM guest with the haltpoll driver, how long an idle CPU polls before it halts.
pub fn describe() -> Option<String> {
    describe_from(Path::new(CPUIDLE_DRIVER), Path::new(HALTPOLL_NS))
}

fn describe_from(driver: &Path, haltpoll_ns: &Path) -> Option<String> {
    let driver = read(driver)?;
    let poll_ns = read(haltpoll_ns).filter(|_| driver == "haltpoll");
    Some(match poll_ns.as_deref() {
        Some("0") => "cpuidle driver haltpoll, guest_halt_poll_ns 0: an idle CPU halts at once, \
                      and each wake-up of one goes through the hypervisor"
            .to_string(),
        Some(ns) => format!(
            "cpuidle driver haltpoll, guest_halt_poll_ns {ns}: an idle CPU polls that long \
             before it halts"
        ),
        None => format!("cpuidle driver {driver}"),
    })
}

fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_the_kernel_says() {
        let dir = std::env::temp_dir().join(format!("cohort-idle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (driver, poll) = (dir.join("driver"), dir.join("poll"));
        assert_eq!(describe_from(&driver, &poll), None);
        std::fs::write(&driver, "intel_idle\n").unwrap();
        std::fs::write(&poll, "0\n").unwrap();
        assert_eq!(
            describe_from(&driver, &poll).as_deref(),
            Some("cpuidle driver intel_idle")
        );
        std::fs::write(&driver, "haltpoll\n").unwrap();
        assert!(
            describe_from(&driver, &poll)
                .unwrap()
                .contains("halts at once")
        );
        std::fs::write(&poll, "200000\n").unwrap();
        assert!(
            describe_from(&driver, &poll)
                .unwrap()
                .contains("polls that long")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
