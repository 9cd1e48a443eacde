//! `palisade completions SHELL` and `palisade man`: shell completions and manual pages
//! generated from the clap definition itself, so they can never describe a command line the
//! binary does not accept. Generated on demand rather than at build time: a packager runs
//! `palisade completions bash > /usr/share/bash-completion/completions/palisade` and
//! `palisade man --out /usr/share/man/man1` from the binary they ship, and a build script
//! would have to compile the whole CLI a second time to do the same.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

/// Print a shell completion script for `palisade`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Write the manual pages of `palisade` and its subcommands.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `palisade.1` and one `palisade-COMMAND.1` page per subcommand into this folder
    /// (created if missing). Without it, `palisade.1` alone goes to standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run_completions(args: CompletionsArgs) -> anyhow::Result<bool> {
    let mut command = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "palisade", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completion script")?;
    Ok(true)
}

pub fn run_man(args: ManArgs) -> anyhow::Result<bool> {
    let command = super::Cli::command();
    match args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            std::io::stdout()
                .write_all(&page)
                .context("cannot write the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Building fills in each subcommand's display name (`palisade-eval`), which names
            // its page and the file.
            let mut command = command;
            command.build();
            write_pages(&dir, &command)?;
        }
    }
    Ok(true)
}

/// Writes the page of `command` as `NAME.1` and those of its subcommands as `NAME-SUB.1`.
fn write_pages(dir: &Path, command: &clap::Command) -> anyhow::Result<()> {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    write_atomically(&dir.join(format!("{name}.1")), &page)?;
    // clap's generated `help` subcommands are documented by the pages themselves.
    let documented = |sub: &&clap::Command| !sub.is_hide_set() && sub.get_name() != "help";
    for sub in command.get_subcommands().filter(documented) {
        write_pages(dir, sub)?;
    }
    Ok(())
}

/// No half-written page: a temporary file in the same folder, renamed over the page.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    file.write_all(bytes)?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
