//! Tag strategies for CI: which tags a build gets.
//!
//! Pure functions of the git state ([`GitInfo`]); [`GitInfo::discover`] reads it from a work tree
//! (or the CI's environment).

use std::path::Path;
use std::process::Command;

use crate::Error;

/// One way to name an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// `latest`.
    Latest,
    /// The commit's SHA, shortened to 12 characters.
    Sha,
    /// `BRANCH-SHA` (branch sanitized for a tag: `feature/x` gives `feature-x`).
    BranchSha,
    /// From a git tag `v1.2.3`: `1.2.3`, `1.2` and `1` (only `1.2.3-rc.1` for a pre-release).
    Semver,
    /// A fixed moving tag (`staging`, `production`) that points at the latest image of a stage.
    Moving(String),
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    /// `latest`, `sha`, `branch-sha`, `semver`, or `moving:NAME` / any other valid tag (a moving tag).
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "latest" => Strategy::Latest,
            "sha" => Strategy::Sha,
            "branch-sha" => Strategy::BranchSha,
            "semver" => Strategy::Semver,
            other => {
                let name = other.strip_prefix("moving:").unwrap_or(other);
                crate::validate_tag(name)?;
                Strategy::Moving(name.into())
            }
        })
    }
}

/// The git state a build comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// Full commit SHA.
    pub sha: String,
    /// Branch name, if on one.
    pub branch: Option<String>,
    /// A tag pointing exactly at the commit, if any.
    pub tag: Option<String>,
}

/// Length of the short SHA in tags.
pub const SHORT_SHA: usize = 12;

impl GitInfo {
    /// Reads the state of the work tree at `dir` with `git`. CI variables win when set
    /// (`GITHUB_SHA`/`GITHUB_REF_NAME`/`GITHUB_REF_TYPE`, `CI_COMMIT_SHA`/`CI_COMMIT_BRANCH`/`CI_COMMIT_TAG`),
    /// since CI checkouts are often on a detached HEAD.
    pub fn discover(dir: &Path) -> Result<Self, Error> {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sha = env("GITHUB_SHA")
            .or_else(|| env("CI_COMMIT_SHA"))
            .or_else(|| git(&["rev-parse", "HEAD"]))
            .ok_or_else(|| {
                Error::invalid(
                    "git work tree",
                    dir.display().to_string(),
                    "no commit found (is it a git repository with a commit?)",
                )
            })?;
        let github_ref = env("GITHUB_REF_NAME");
        let github_is_tag = env("GITHUB_REF_TYPE").as_deref() == Some("tag");
        let branch = if github_is_tag {
            None
        } else {
            github_ref.clone()
        }
        .or_else(|| env("CI_COMMIT_BRANCH"))
        .or_else(|| git(&["symbolic-ref", "--short", "-q", "HEAD"]));
        let tag = if github_is_tag { github_ref } else { None }
            .or_else(|| env("CI_COMMIT_TAG"))
            .or_else(|| git(&["describe", "--tags", "--exact-match", "HEAD"]));
        Ok(GitInfo { sha, branch, tag })
    }
}

/// A string made into a valid tag: invalid characters become `-`, lowercase, at most 128 characters.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['.', '-']) {
        out.remove(0);
    }
    out.truncate(128);
    out
}

/// The version a git tag names (`v1.2.3` or `1.2.3`), if it is one.
pub fn version_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The tags `strategies` give for `git`, in order, without repeats. A strategy that does not apply
/// (semver without a version tag, branch-sha off a branch) gives nothing.
pub fn tags_for(strategies: &[Strategy], git: &GitInfo) -> Vec<String> {
    let short: String = git.sha.chars().take(SHORT_SHA).collect();
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: String| {
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    };
    for s in strategies {
        match s {
            Strategy::Latest => push("latest".into()),
            Strategy::Sha => push(short.clone()),
            Strategy::BranchSha => {
                if let Some(b) = &git.branch {
                    let b = sanitize(b);
                    let max = 128 - short.len() - 1;
                    push(format!("{}-{short}", &b[..b.len().min(max)]));
                }
            }
            Strategy::Semver => {
                if let Some(v) = git.tag.as_deref().and_then(version_of) {
                    push(sanitize(&v.to_string()));
                    if v.pre.is_empty() {
                        push(format!("{}.{}", v.major, v.minor));
                        push(v.major.to_string());
                    }
                }
            }
            Strategy::Moving(name) => push(name.clone()),
        }
    }
    out
}
