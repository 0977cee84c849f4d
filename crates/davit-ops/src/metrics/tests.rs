use super::*;

const OUTPUT: &str = "cpu  100 0 100 800 0 0 0 0 0 0\n\
cpu  130 0 120 850 0 0 0 0 0 0\n\
@@\n0.52 0.40 0.31 2/345 6789\n\
@@\nMemTotal:       24576000 kB\nMemAvailable:   20480000 kB\n\
@@\n/dev/vda 263174212 37748736 211998328  16% /\n";

#[test]
fn reads_cpu_load_memory_and_disk() {
    insta::assert_json_snapshot!(parse(OUTPUT), @r#"
    {
      "cpus": null,
      "cpu_percent": 50.0,
      "load": [
        0.52,
        0.4,
        0.31
      ],
      "memory_total_bytes": 25165824000,
      "memory_used_bytes": 4194304000,
      "disk_mount": "/",
      "disk_total_bytes": 269490393088,
      "disk_used_bytes": 38654705664,
      "disk_available_bytes": 217086287872
    }
    "#);
}

#[test]
fn missing_parts_stay_unknown() {
    let m = parse("cpu 1 2 3 4\n@@\ngarbage\n@@\n@@\n");
    assert_eq!(m, HostMetrics::default());
}

#[test]
fn the_data_root_is_quoted_for_the_shell() {
    assert!(script("/var/lib/docker").ends_with("df -Pk '/var/lib/docker' 2>/dev/null | tail -n1"));
    assert_eq!(shell_quote("/a'b"), r"'/a'\''b'");
}

#[test]
fn human_units() {
    assert_eq!(human_bytes(12), "12 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    assert_eq!(human_duration(9), "9s");
    assert_eq!(human_duration(252), "4m12s");
    assert_eq!(human_duration(7500), "2h5m");
    assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d4h");
}
