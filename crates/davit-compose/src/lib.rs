//! `davit-compose`: loads compose files exactly as Docker Compose v2 does.
//!
//! The crate is pure: it never touches the network or the clock, and reads files only through the
//! [`Loader`] trait (use [`FsLoader`] for the real file system, or your own map in tests). The process
//! environment is passed in as a map ([`LoadOptions::environment`]).
//!
//! ```no_run
//! use davit_compose::{load, FsLoader, LoadOptions};
//! let opts = LoadOptions::new(std::env::current_dir().unwrap())
//!     .with_environment(std::env::vars());
//! match load(&opts, &FsLoader) {
//!     Ok(project) => {
//!         for service in &project.services {     // dependency order: dependencies first
//!             println!("{} {:?}", service.name, service.image);
//!         }
//!         for w in &project.warnings {                // unset variables, as Compose warns
//!             eprintln!("warning: {w}");
//!         }
//!         println!("{}", project.config_json().unwrap()); // `docker compose config --format json`
//!     }
//!     Err(diagnostics) => eprintln!("{diagnostics}"), // every problem, at file:line:column
//! }
//! ```
//!
//! The pipeline: `yaml` (positioned node tree, anchors, merge keys, `!reset`/`!override`) →
//! interpolation (`interp`) → includes, extends and multi-file merge (`merge`) → profiles →
//! normalisation to Compose's canonical JSON (`normalize`) → validation → the typed [`Project`].

mod diag;
mod dotenv;
mod error;
mod interp;
mod loader;
mod merge;
mod model;
mod normalize;
mod schema;
mod yaml;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use dotenv::{DotenvError, parse_dotenv};
pub use error::Error;
pub use interp::{InterpolationError, interpolate, interpolate_collecting};
pub use loader::{FsLoader, LoadOptions, Loader, compose_files, load};
pub use model::{
    DavitEnvironment, DavitHooks, DavitService, Dependency, DependencyCondition, EnvFile,
    Healthcheck, Port, Project, Proxy, Service, Strategy, UpdateConfig, Volume,
};

#[cfg(test)]
mod tests;
