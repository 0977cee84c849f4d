//! `x-davit.hooks` as local commands: the engine calls them under the deploy lock; they run in the
//! project directory with `DAVIT_*` variables, their output on stderr (stdout stays for `--json`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use davit_compose::DavitHooks;
use davit_engine::hooks::{Hook, HookContext, Hooks};

/// The project's hooks, run as local processes.
#[derive(Debug, Clone)]
pub struct LocalHooks {
    hooks: DavitHooks,
    dir: PathBuf,
    /// A hook still running after this long is killed and counts as failed.
    pub timeout: Duration,
}

impl LocalHooks {
    pub fn new(hooks: DavitHooks, dir: &Path) -> LocalHooks {
        LocalHooks {
            hooks,
            dir: dir.to_path_buf(),
            timeout: Duration::from_secs(300),
        }
    }

    /// Whether the project has any hook.
    pub fn any(&self) -> bool {
        self.hooks.pre_deploy.is_some() || self.hooks.post_deploy.is_some()
    }

    fn argv(&self, hook: Hook) -> Option<&[String]> {
        match hook {
            Hook::PreDeploy => self.hooks.pre_deploy.as_deref(),
            Hook::PostDeploy => self.hooks.post_deploy.as_deref(),
        }
    }
}

/// The variables a hook sees, besides davit's own environment.
pub fn variables(hook: Hook, ctx: &HookContext) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("DAVIT_HOOK", hook.to_string()),
        ("DAVIT_PROJECT", ctx.project.clone()),
        ("DAVIT_RELEASE", ctx.release.clone()),
        ("DAVIT_HOSTS", ctx.hosts.join(",")),
        ("DAVIT_SERVICES", ctx.services.join(",")),
        ("DAVIT_PERFORMER", ctx.who.clone()),
    ];
    if let Some(o) = &ctx.outcome {
        v.push(("DAVIT_OUTCOME", o.to_string()));
    }
    if let Some(r) = &ctx.rollback_of {
        v.push(("DAVIT_ROLLBACK_OF", r.clone()));
    }
    v
}

#[async_trait]
impl Hooks for LocalHooks {
    async fn run(&self, hook: Hook, ctx: &HookContext) -> Result<(), String> {
        let Some(argv) = self.argv(hook) else {
            return Ok(());
        };
        let (prog, args) = argv.split_first().ok_or("an empty hook command")?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .current_dir(&self.dir)
            .envs(variables(hook, ctx))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{hook} hook: cannot run {prog}: {e}"))?;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Err(_) => Err(format!(
                "{hook} hook: still running after {}s, killed",
                self.timeout.as_secs()
            )),
            Ok(Err(e)) => Err(format!("{hook} hook: {e}")),
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{hook} hook ({}) {status}", argv.join(" "))),
        }
    }
}
