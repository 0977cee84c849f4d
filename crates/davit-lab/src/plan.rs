//! The lab's naming and address plan: pure functions of (instance, host index).
//!
//! Instance 0 is the one `davit lab up` makes (up to 64 hosts, the registry at `10.77.0.1:5000`).
//! Test suites use other instances (1..=23, up to 8 hosts each) so that several labs can live side by
//! side on one machine without sharing a host.

use crate::Error;

/// The largest number of hosts of instance 0.
pub const MAX_HOSTS: u16 = 64;
/// The largest number of hosts of any other instance.
pub const MAX_HOSTS_SIDE: u16 = 8;
/// The largest instance number.
pub const MAX_INSTANCE: u8 = 23;
/// The registry port.
pub const REGISTRY_PORT: u16 = 5000;

/// Where one lab instance lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance(pub u8);

impl Instance {
    /// Checks that `hosts` hosts fit this instance.
    pub fn check(self, hosts: u16) -> Result<(), Error> {
        if self.0 > MAX_INSTANCE {
            return Err(Error::Invalid(format!(
                "instance {} is out of range: use 0 to {MAX_INSTANCE}",
                self.0
            )));
        }
        let max = self.max_hosts();
        if hosts > max {
            return Err(Error::Invalid(format!(
                "--hosts {hosts} is more than lab instance {} holds: use 0 to {max}",
                self.0
            )));
        }
        Ok(())
    }

    /// How many hosts this instance can hold.
    pub fn max_hosts(self) -> u16 {
        if self.0 == 0 {
            MAX_HOSTS
        } else {
            MAX_HOSTS_SIDE
        }
    }

    /// The third octet of host `i` (1-based): `10.77.<octet>.0/24` is its link.
    pub fn octet(self, i: u16) -> u16 {
        if self.0 == 0 {
            i
        } else {
            MAX_HOSTS + (u16::from(self.0) - 1) * MAX_HOSTS_SIDE + i
        }
    }

    /// The host's own address (inside its namespace).
    pub fn host_address(self, i: u16) -> String {
        format!("10.77.{}.2", self.octet(i))
    }

    /// The address of this machine's end of the host's link.
    pub fn gateway_address(self, i: u16) -> String {
        format!("10.77.{}.1", self.octet(i))
    }

    /// The registry address, `10.77.0.<instance+1>`.
    pub fn registry_ip(self) -> String {
        format!("10.77.0.{}", u16::from(self.0) + 1)
    }

    /// `ip:port` of the registry.
    pub fn registry_address(self) -> String {
        format!("{}:{REGISTRY_PORT}", self.registry_ip())
    }

    /// The host's name as users see it.
    pub fn host_name(self, i: u16) -> String {
        format!("h{i}")
    }

    /// The network namespace of host `i`.
    pub fn netns(self, i: u16) -> String {
        format!("{}{i}", self.netns_prefix())
    }

    /// Every namespace of this instance starts with this.
    pub fn netns_prefix(self) -> String {
        if self.0 == 0 {
            "davit-h".to_string()
        } else {
            format!("davit{}-h", self.0)
        }
    }

    /// This machine's end of host `i`'s veth pair.
    pub fn veth(self, i: u16) -> String {
        format!("{}{i}", self.veth_prefix())
    }

    /// Every veth of this instance starts with this.
    pub fn veth_prefix(self) -> String {
        format!("dv{}h", self.0)
    }

    /// The temporary name of the namespace's end before it is moved and renamed `eth0`.
    pub fn veth_peer(self, i: u16) -> String {
        format!("dv{}p{i}", self.0)
    }

    /// The cgroup parent of the containers of host `i`'s engine.
    pub fn cgroup_parent(self, i: u16) -> String {
        format!("davit-lab{}-h{i}", self.0)
    }

    /// The bridge of host `i`'s engine (distinct per host to ease debugging).
    pub fn docker_bip(self, i: u16) -> String {
        format!("172.30.{}.1/24", self.octet(i))
    }

    /// The instance's directory name below the lab root.
    pub fn dir_name(self) -> String {
        format!("lab{}", self.0)
    }
}

/// The label of the registry addresses, which live on this machine's loopback interface (so every
/// namespace reaches them through its link, and no kernel module beyond veth is needed).
pub const LO_LABEL: &str = "lo:davit";
