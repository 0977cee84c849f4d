//! The compose-file options every command that loads a project takes (`config`, `deploy` & co.,
//! `build`, `preflight`), and the load options they give.

use std::path::PathBuf;

use davit_compose::LoadOptions;

/// Which compose files, as `docker compose` takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct ComposeArgs {
    /// Compose file(s), merged in order (default: compose.yaml & co. in the current directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The project directory (default: the directory of the first file).
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// The project name.
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Env file(s) for interpolation (default: .env in the project directory).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profile(s) to enable.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

impl ComposeArgs {
    /// Load options for these files, relative to `cwd`, interpolating from `environment`.
    pub fn load_options(
        &self,
        cwd: impl Into<PathBuf>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> LoadOptions {
        let mut opts = LoadOptions::new(cwd).with_environment(environment);
        opts.files = self.files.clone();
        opts.project_directory = self.project_directory.clone();
        opts.project_name = self.project_name.clone();
        opts.env_files = self.env_files.clone();
        opts.profiles = self.profiles.clone();
        opts
    }
}
