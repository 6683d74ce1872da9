//! Go packages as two derivations, as Nix's `buildGoModule` does.
//!
//! 1. **The module download** ([`GoModules`]), fixed-output: a wrapper module
//!    (`kiln.local/<package>`) that requires the package's module at the version, replaces what
//!    the recipe says, lists each binary's package as a `tool`, and holds the recipe's own
//!    files; `go mod tidy` and `go mod vendor` through the machine's configured module proxy
//!    (checked against the checksum database, as `go` always does) give `go.mod`, `go.sum` and
//!    `vendor/`. Its content hash is the version's `vendor-hash`, so the store path depends on
//!    nothing else and a download that differs fails naming both hashes. It also records the
//!    time the proxy gives for the module version (`SOURCE_DATE`), the `{date}` of ldflags,
//!    and, under `data/`, the module's own files the recipe's `data` names.
//! 2. **The compile** ([`GoBuild`]), offline: `GOPROXY=off`, `-mod=vendor`, `-trimpath`,
//!    `-buildvcs=false`, the recipe's tags, cgo setting and ldflags (`-s -w` and the version
//!    stamps upstream's release sets), a cleared environment with `GOCACHE` and `GOPATH` in a
//!    fresh scratch directory, `GOTOOLCHAIN=local`. Its output is `bin/<name>` (mode 0755) for
//!    each binary, `VERSION` (`v{version}`) and the recipe's `data` under `share/<package>/`.
//!
//! The Go toolchain is part of the pin: each version names the Go release it builds with, both
//! derivations check that `go version` reports exactly it, and it is part of both identities.
//! Go's own releases are reproducible, so the same Go version anywhere compiles the same bytes.
//! The wrapper's `go` and `godebug` lines are copied from the module's own `go.mod`, so the
//! binaries run with the defaults upstream's build gives them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params, format_elapsed};
use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::packages::{GoRecipe, Package, PackageVersion, VersionSource, default_binary_name};
use crate::process::{Output, SYSTEM_PATH, run_output, run_streaming};

/// The file of a module download that holds the module version's time from the proxy.
pub const SOURCE_DATE_FILE: &str = "SOURCE_DATE";

/// The directory of a module download that holds the recipe's `data` (the module's own files
/// shipped with the programs), each at its path in the module.
const DATA_DIR: &str = "data";

/// The target every Go package is built for.
const GOOS: &str = "linux";
const GOARCH: &str = "amd64";
const GOAMD64: &str = "v1";

/// The settings of the machine's `go` that say where modules come from; passed on to the
/// download, never part of any identity (a mirror serves the same bytes).
const NETWORK_SETTINGS: [&str; 7] = [
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GOINSECURE",
    "GOAUTH",
];

/// How often a compile reports progress when it has something new.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// The two derivations of a Go package version: the download and the compile.
pub struct GoDerivations {
    /// The module download: fixed-output, pinned by the version's `vendor-hash`.
    pub modules: Derivation,
    /// The compile; its input named `modules` must be given the download's id.
    pub build: Derivation,
}

/// The two derivations that build `version` of `package`, with the compile's `modules` input
/// pointing at `modules_id` (where the caller adds [`GoDerivations::modules`]). Store names
/// are `<package>-<version>-modules` and `<package>-<version>`.
///
/// # Errors
///
/// [`ImageError::Package`] if the package has no Go recipe or the version is not a Go one.
pub fn go_derivations(
    package: &Package,
    version: &PackageVersion,
    modules_id: impl Into<DrvId>,
) -> Result<GoDerivations, ImageError> {
    let not_go = |reason: &str| ImageError::Package {
        file: format!("packages/{}.toml", package.name),
        line: 0,
        reason: format!("{} {}: {reason}", package.name, version.version),
    };
    let recipe = package
        .go
        .as_ref()
        .ok_or_else(|| not_go("the package has no [go] recipe"))?;
    let VersionSource::Go {
        toolchain,
        vendor_hash,
    } = &version.source
    else {
        return Err(not_go("this version is not built from Go modules"));
    };
    let modules = GoModules::new(&package.name, &version.version, toolchain, recipe);
    let build = GoBuild::new(&package.name, &version.version, toolchain, recipe);
    Ok(GoDerivations {
        modules: Derivation::new(
            format!("{}-{}-modules", package.name, version.version),
            Arc::new(modules),
        )
        .fixed(*vendor_hash),
        // The compile takes minutes: its identity is GoBuild's own (kind, version, parameters
        // and the module download), not the code of all of kiln, so it is rebuilt only when
        // what it compiles or how changes (GoBuild::version is bumped with the recipe).
        build: Derivation::new(
            format!("{}-{}", package.name, version.version),
            Arc::new(build),
        )
        .input("modules", modules_id)
        .ignoring_recipe(),
    })
}

/// The module download of one Go package version (see the [module docs](self)).
///
/// Serialized, it is the builder's [`Params`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GoModules {
    package: String,
    version: String,
    toolchain: String,
    module: String,
    require: Vec<String>,
    local_replace_version: Option<String>,
    tools: Vec<String>,
    files: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    data: Vec<String>,
}

impl GoModules {
    /// The download of `version` of `package` per `recipe`, with Go `toolchain`.
    pub fn new(package: &str, version: &str, toolchain: &str, recipe: &GoRecipe) -> GoModules {
        let expand = |template: &str| crate::packages::expand_template(template, version, "");
        let mut tools: Vec<String> = recipe
            .binaries
            .values()
            .filter(|path| !path.starts_with("./"))
            .cloned()
            .collect();
        tools.sort();
        tools.dedup();
        GoModules {
            package: package.to_owned(),
            version: version.to_owned(),
            toolchain: toolchain.to_owned(),
            module: recipe.module.clone(),
            require: recipe.require.iter().map(|line| expand(line)).collect(),
            local_replace_version: recipe.local_replace_version.as_deref().map(expand),
            tools,
            files: recipe.files.clone(),
            data: recipe.data.clone(),
        }
    }

    fn build_into(&self, out: &Path, report: &dyn Fn(&str)) -> Result<(), ImageError> {
        let go = Go::find(&self.package, &self.version, &self.toolchain)?;
        let network = go.network_settings()?;
        let scratch = Scratch::beside(out, "go-modules")?;
        let home = scratch.path();
        let run = |arguments: &[&str], dir: &Path| -> Result<String, ImageError> {
            let mut command = go.command(home);
            command
                .current_dir(dir)
                .args(arguments)
                .env("GOFLAGS", "-modcacherw")
                .env("GOMODCACHE", home.join("modcache"))
                .envs(network.iter().map(|(name, value)| (name, value)));
            run_output(command)
        };

        let module_version = format!("v{}", self.version);
        report(&format!("downloading {}@{module_version}", self.module));
        let download: Download = serde_json::from_str(&run(
            &[
                "mod",
                "download",
                "-json",
                &format!("{}@{module_version}", self.module),
            ],
            home,
        )?)
        .map_err(|error| self.error(format!("`go mod download -json` gave no JSON: {error}")))?;
        let info: Info = read_json(Path::new(&download.info))?;
        let upstream: ModFile =
            serde_json::from_str(&run(&["mod", "edit", "-json", &download.go_mod], home)?)
                .map_err(|error| {
                    self.error(format!("`go mod edit -json` gave no JSON: {error}"))
                })?;

        let wrapper = home.join("wrapper");
        for (path, text) in &self.files {
            let file = wrapper.join(path);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(|error| ImageError::io(parent, error))?;
            }
            fs::write(&file, text).map_err(|error| ImageError::io(&file, error))?;
        }
        fs::create_dir_all(&wrapper).map_err(|error| ImageError::io(&wrapper, error))?;
        let go_mod = self.wrapper_go_mod(&upstream)?;
        let go_mod_path = wrapper.join("go.mod");
        fs::write(&go_mod_path, go_mod).map_err(|error| ImageError::io(&go_mod_path, error))?;

        report(&format!(
            "resolving and vendoring the modules {} {} needs",
            self.package, self.version
        ));
        run(&["mod", "tidy"], &wrapper)?;
        run(&["mod", "vendor"], &wrapper)?;

        copy_tree(&wrapper, out)?;
        if !self.data.is_empty() {
            // The module's own files, from the download the checksum database vouched for.
            let source = Path::new(&download.dir);
            for path in &self.data {
                copy_entry(&source.join(path), &out.join(DATA_DIR).join(path))
                    .map_err(|error| self.error(format!("go.data `{path}`: {error}")))?;
            }
        }
        let date = out.join(SOURCE_DATE_FILE);
        fs::write(&date, format!("{}\n", info.time)).map_err(|error| ImageError::io(&date, error))
    }

    /// The wrapper's `go.mod`: the module's `go` and `godebug` lines, the requirements, the
    /// tools, and the replacements of the module's local replaces.
    fn wrapper_go_mod(&self, upstream: &ModFile) -> Result<String, ImageError> {
        let mut text = format!("module kiln.local/{}\n", self.package);
        if let Some(go) = upstream.go.as_deref() {
            text.push_str(&format!("\ngo {go}\n"));
        }
        let godebug = upstream.godebug.as_deref().unwrap_or_default();
        if !godebug.is_empty() {
            text.push('\n');
            for setting in godebug {
                text.push_str(&format!("godebug {}={}\n", setting.key, setting.value));
            }
        }
        text.push_str(&format!("\nrequire {} v{}\n", self.module, self.version));
        for line in &self.require {
            text.push_str(&format!("require {line}\n"));
        }
        if !self.tools.is_empty() {
            text.push('\n');
            for tool in &self.tools {
                text.push_str(&format!("tool {tool}\n"));
            }
        }
        if let Some(version) = &self.local_replace_version {
            let local: Vec<&str> = upstream
                .replace
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|replace| replace.new.path.starts_with("./"))
                .map(|replace| replace.old.path.as_str())
                .collect();
            if local.is_empty() {
                return Err(self.error(format!(
                    "local-replace-version is set, but {}'s go.mod replaces nothing with a directory of its own",
                    self.module
                )));
            }
            text.push_str("\nreplace (\n");
            for path in local {
                text.push_str(&format!("\t{path} => {path} {version}\n"));
            }
            text.push_str(")\n");
        }
        Ok(text)
    }

    fn error(&self, reason: String) -> ImageError {
        ImageError::Assembly {
            what: format!("the Go modules of {} {}", self.package, self.version),
            reason,
        }
    }
}

impl Builder for GoModules {
    fn kind(&self) -> &str {
        "kiln-image.go.modules"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(self)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}

/// The offline compile of one Go package version (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoBuild {
    package: String,
    version: String,
    toolchain: String,
    tags: Vec<String>,
    cgo: bool,
    ldflags: Vec<String>,
    binaries: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tests: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    data: Vec<String>,
}

/// [`GoBuild`]'s parameters: the compile and the platform it targets.
///
/// The compile's digest ignores kiln's recipe, so these bytes alone decide when it reruns (it
/// takes minutes): `params_are_pinned` holds them.
#[derive(Serialize)]
struct GoBuildParams<'a> {
    #[serde(flatten)]
    build: &'a GoBuild,
    target: [&'static str; 3],
}

impl GoBuild {
    /// The compile of `version` of `package` per `recipe`, with Go `toolchain`.
    pub fn new(package: &str, version: &str, toolchain: &str, recipe: &GoRecipe) -> GoBuild {
        GoBuild {
            package: package.to_owned(),
            version: version.to_owned(),
            toolchain: toolchain.to_owned(),
            tags: recipe.tags.clone(),
            cgo: recipe.cgo,
            ldflags: recipe.ldflags.clone(),
            binaries: recipe.binaries.clone(),
            tests: recipe.tests.clone(),
            data: recipe.data.clone(),
        }
    }

    /// The Go package paths to build, in the wrapper module's terms.
    fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.binaries.values().cloned().collect();
        targets.sort();
        targets.dedup();
        targets
    }

    fn build_into(
        &self,
        modules: &Path,
        out: &Path,
        report: &dyn Fn(&str),
    ) -> Result<(), ImageError> {
        let go = Go::find(&self.package, &self.version, &self.toolchain)?;
        let date_path = modules.join(SOURCE_DATE_FILE);
        let date = fs::read_to_string(&date_path)
            .map_err(|error| ImageError::io(&date_path, error))?
            .trim()
            .to_owned();
        let ldflags: Vec<String> = self
            .ldflags
            .iter()
            .map(|flag| crate::packages::expand_template(flag, &self.version, &date))
            .collect();
        let scratch = Scratch::beside(out, "go-build")?;
        let home = scratch.path();
        // The compile reads the module tree in place (the store path is read-only, and
        // -trimpath keeps its location out of the binaries).
        let configure = |command: &mut Command| {
            command
                .current_dir(modules)
                .env("GOPROXY", "off")
                .env("GOFLAGS", "-mod=vendor")
                .env("CGO_ENABLED", if self.cgo { "1" } else { "0" })
                .env("GOOS", GOOS)
                .env("GOARCH", GOARCH)
                .env("GOAMD64", GOAMD64)
                .env("GOMODCACHE", home.join("modcache"));
        };
        let targets = self.targets();
        let bin = home.join("bin");
        fs::create_dir_all(&bin).map_err(|error| ImageError::io(&bin, error))?;
        let started = Instant::now();
        let flags = [
            "-trimpath".to_owned(),
            "-buildvcs=false".to_owned(),
            format!("-tags={}", self.tags.join(",")),
            format!("-ldflags=all={}", ldflags.join(" ")),
        ];

        let mut build = go.command(home);
        configure(&mut build);
        build
            .args(["build", "-v"])
            .args(&flags)
            .arg("-o")
            .arg(format!("{}/", bin.display()))
            .args(&targets);
        let names: Vec<&str> = self.binaries.keys().map(String::as_str).collect();
        self.compile(
            &go,
            home,
            &configure,
            build,
            &targets,
            &names.join(" "),
            report,
        )?;

        for (name, package) in &self.tests {
            // The test program's packages are compiled first with `go build -v`, which names
            // each as it goes (progress for a compile of many minutes); `go test -c` then finds
            // them in the build cache and compiles the test package itself and links.
            let mut list = go.command(home);
            configure(&mut list);
            list.args(["list", "-deps", "-test", "-f", "{{.ImportPath}}"])
                .arg(package);
            let wrapper = format!("kiln.local/{}/", self.package);
            let dependencies: Vec<String> = list_packages(list)?
                .lines()
                .filter(|path| !path.contains(' ') && !path.ends_with(".test"))
                .filter(|path| !path.starts_with(&wrapper))
                .map(str::to_owned)
                .collect();
            let mut build = go.command(home);
            configure(&mut build);
            build.args(["build", "-v"]).args(&flags).args(&dependencies);
            self.compile(
                &go,
                home,
                &configure,
                build,
                &dependencies,
                &format!("the packages of {name}"),
                report,
            )?;
            let mut test = go.command(home);
            configure(&mut test);
            test.args(["test", "-c"])
                .args(&flags)
                .arg("-o")
                .arg(bin.join(name))
                .arg(package);
            report(&format!(
                "compiling and linking {name} (`go test -c {package}`)"
            ));
            run_streaming(test, &home.join("test.log"), PROGRESS_INTERVAL, &mut |_| {})?;
        }
        report(&format!(
            "compiled {} {} in {}",
            self.package,
            self.version,
            format_elapsed(started.elapsed())
        ));

        let out_bin = out.join("bin");
        fs::create_dir_all(&out_bin).map_err(|error| ImageError::io(&out_bin, error))?;
        let built: Vec<(&String, PathBuf)> = self
            .binaries
            .iter()
            .map(|(name, package)| (name, bin.join(default_binary_name(package))))
            .chain(self.tests.keys().map(|name| (name, bin.join(name))))
            .collect();
        for (name, built) in built {
            let installed = out_bin.join(name);
            fs::copy(&built, &installed).map_err(|error| ImageError::io(&built, error))?;
            fs::set_permissions(&installed, fs::Permissions::from_mode(0o755))
                .map_err(|error| ImageError::io(&installed, error))?;
        }
        if !self.data.is_empty() {
            let share = out.join("share").join(&self.package);
            for path in &self.data {
                let from = modules.join(DATA_DIR).join(path);
                copy_entry(&from, &share.join(path))?;
            }
        }
        let version = out.join("VERSION");
        fs::write(&version, format!("v{}\n", self.version))
            .map_err(|error| ImageError::io(&version, error))
    }

    /// Runs `build` (a `go build -v` of `targets`), reporting every [`PROGRESS_INTERVAL`] how
    /// many of the packages they need are compiled and which was the latest; `what` names
    /// the programs in the first report.
    #[allow(clippy::too_many_arguments)]
    fn compile(
        &self,
        go: &Go,
        home: &Path,
        configure: &dyn Fn(&mut Command),
        build: Command,
        targets: &[String],
        what: &str,
        report: &dyn Fn(&str),
    ) -> Result<(), ImageError> {
        let mut list = go.command(home);
        configure(&mut list);
        list.args(["list", "-deps", "-f", "{{.ImportPath}}"])
            .args(targets);
        let total = list_packages(list)?.lines().count();
        report(&format!(
            "compiling {} {} ({total} packages): {what}",
            self.package, self.version
        ));
        let started = Instant::now();
        let mut compiled = 0usize;
        let mut latest = String::new();
        let mut last_report = Instant::now();
        run_streaming(
            build,
            &home.join("build.log"),
            PROGRESS_INTERVAL,
            &mut |output| {
                if let Output::Line(line) = output {
                    compiled += 1;
                    line.clone_into(&mut latest);
                }
                if last_report.elapsed() >= PROGRESS_INTERVAL {
                    report(&format!(
                        "[{}] compiled {compiled} of {total} packages, latest {latest}",
                        format_elapsed(started.elapsed())
                    ));
                    last_report = Instant::now();
                }
            },
        )
    }
}

impl Builder for GoBuild {
    fn kind(&self) -> &str {
        "kiln-image.go.build"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(&GoBuildParams {
            build: self,
            target: [GOOS, GOARCH, GOAMD64],
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let modules = ctx.input("modules")?;
        self.build_into(modules, ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}

/// The machine's `go`, checked to be the pinned version.
struct Go {
    program: PathBuf,
}

impl Go {
    /// Finds `go` on `PATH` (or in `/usr/local/go/bin`) and checks that it is Go `toolchain`.
    fn find(package: &str, version: &str, toolchain: &str) -> Result<Go, ImageError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let program = std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/local/go/bin")])
            .map(|dir| dir.join("go"))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| ImageError::GoToolchain {
                package: package.to_owned(),
                version: version.to_owned(),
                pinned: toolchain.to_owned(),
                go: "go".to_owned(),
                found: "nothing: there is no go on PATH".to_owned(),
            })?;
        let mut command = Command::new(&program);
        command
            .arg("version")
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("GOTOOLCHAIN", "local");
        let found = run_output(command)?.trim().to_owned();
        // `go version go1.26.8 linux/amd64`
        let reported = found.split_whitespace().nth(2).unwrap_or_default();
        if reported != format!("go{toolchain}") {
            return Err(ImageError::GoToolchain {
                package: package.to_owned(),
                version: version.to_owned(),
                pinned: toolchain.to_owned(),
                go: program.display().to_string(),
                found,
            });
        }
        Ok(Go { program })
    }

    /// A `go` command with a cleared environment whose home, cache and path are in `home`.
    fn command(&self, home: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("HOME", home)
            .env("GOENV", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", home.join("cache"))
            .env("GOTMPDIR", home.join("tmp"))
            .env("GOPATH", home.join("gopath"))
            .env("GOTELEMETRY", "off")
            .env("LC_ALL", "C");
        command
    }

    /// Where the machine's `go` fetches modules from (its settings as the calling
    /// environment and its configuration files give them), plus the proxy variables of
    /// the environment.
    fn network_settings(&self) -> Result<Vec<(String, OsString)>, ImageError> {
        let mut command = Command::new(&self.program);
        command.arg("env").arg("-json").args(NETWORK_SETTINGS);
        let text = run_output(command)?;
        let values: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|error| ImageError::Assembly {
                what: "the Go module proxy settings".into(),
                reason: format!("`go env -json` gave no JSON: {error}"),
            })?;
        let mut settings: Vec<(String, OsString)> = values
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name, value.into()))
            .collect();
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            if let Some(value) = std::env::var_os(name) {
                settings.push((name.to_owned(), value));
            }
        }
        Ok(settings)
    }
}

/// What `go mod download -json` says of a module version.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Download {
    info: String,
    go_mod: String,
    dir: String,
}

/// A module version's `.info`: its version and time.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Info {
    time: String,
}

/// What `go mod edit -json` says of a `go.mod`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModFile {
    go: Option<String>,
    // `go mod edit -json` writes `null` for an empty list.
    #[serde(default)]
    godebug: Option<Vec<Godebug>>,
    #[serde(default)]
    replace: Option<Vec<Replace>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Godebug {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Replace {
    old: ModulePath,
    new: ModulePath,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModulePath {
    path: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ImageError> {
    let text = fs::read_to_string(path).map_err(|error| ImageError::io(path, error))?;
    serde_json::from_str(&text).map_err(|error| ImageError::Assembly {
        what: path.display().to_string(),
        reason: format!("not the JSON expected: {error}"),
    })
}

/// A scratch directory beside the output directory `out`, `<out>.<purpose>` (for a build, in
/// the store's `.tmp/`, next to the build's own directory), removed when dropped. One a killed
/// build left is removed first: the store holds the path's build lock while its builder runs,
/// so no other build of the path uses it. (Scratch directories in the system's temporary
/// directory outlived every killed build: Kubernetes' left 3 GB of Go build cache, and Go's
/// own work directories as much; here the next build of the path or a garbage collection,
/// which removes whatever is in `.tmp/`, takes them away.)
struct Scratch(PathBuf);

impl Scratch {
    fn beside(out: &Path, purpose: &str) -> Result<Scratch, ImageError> {
        let mut name = out.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{purpose}"));
        let path = out.with_file_name(name);
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_dir_all(&path).map_err(|error| ImageError::io(&path, error))?;
        }
        fs::create_dir(&path).map_err(|error| ImageError::io(&path, error))?;
        // Go's temporary work directories go here too, not to the system's.
        let tmp = path.join("tmp");
        fs::create_dir(&tmp).map_err(|error| ImageError::io(&tmp, error))?;
        Ok(Scratch(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: what is left is the next build's or garbage collection's to remove.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies `from`, a regular file or a directory, to `to` (which does not exist; its parents are
/// made), as [`copy_tree`] does.
fn copy_entry(from: &Path, to: &Path) -> Result<(), ImageError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|error| ImageError::io(parent, error))?;
    }
    let kind = fs::symlink_metadata(from).map_err(|error| ImageError::io(from, error))?;
    copy_one(from, to, kind.file_type())
}

/// Copies the regular files and directories of `from` into `to` (which exists), files with
/// mode 0644 and directories 0755.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ImageError> {
    let entries = fs::read_dir(from).map_err(|error| ImageError::io(from, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| ImageError::io(from, error))?;
        let source = entry.path();
        let kind = entry
            .file_type()
            .map_err(|error| ImageError::io(&source, error))?;
        copy_one(&source, &to.join(entry.file_name()), kind)?;
    }
    Ok(())
}

/// Copies one entry of kind `kind` from `from` to `to` (whose parent exists): a directory is
/// made and filled by [`copy_tree`], a regular file copied with mode 0644; anything else is
/// refused.
fn copy_one(from: &Path, to: &Path, kind: fs::FileType) -> Result<(), ImageError> {
    if kind.is_dir() {
        fs::create_dir(to).map_err(|error| ImageError::io(to, error))?;
        copy_tree(from, to)
    } else if kind.is_file() {
        fs::copy(from, to).map_err(|error| ImageError::io(from, error))?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o644))
            .map_err(|error| ImageError::io(to, error))
    } else {
        Err(ImageError::Assembly {
            what: from.display().to_string(),
            reason: "a module tree holds only files and directories".into(),
        })
    }
}

/// What `go list` says of a package the vendor tree does not hold.
const NOT_VENDORED: &str = "import lookup disabled by -mod=vendor";

/// Runs the compile's `go list` and returns its output. When a package is missing from the
/// vendor tree, the failure says why that happens and what to do: the module download is
/// found by its `vendor-hash` alone, so a recipe that gains a binary, a test or data still
/// finds the old download until the hash changes.
fn list_packages(list: Command) -> Result<String, ImageError> {
    run_output(list).map_err(|error| match error {
        ImageError::Command {
            command,
            status,
            mut log_tail,
        } if log_tail.iter().any(|line| line.contains(NOT_VENDORED)) => {
            log_tail.push(
                "(the module download this version's vendor-hash pins lacks that package: a \
                 recipe that gains a binary, test or data needs a new download; set the \
                 version's vendor-hash to 64 zeros and build once to learn its hash)"
                    .to_owned(),
            );
            ImageError::Command {
                command,
                status,
                log_tail,
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_missing_from_the_vendor_tree_says_to_renew_the_vendor_hash() {
        let mut list = Command::new("sh");
        list.args([
            "-c",
            "echo 'cannot find module providing package k8s.io/x: import lookup disabled by \
             -mod=vendor' >&2; exit 1",
        ]);
        let error = list_packages(list).expect_err("go list failed").to_string();
        assert!(error.contains("k8s.io/x"), "{error}");
        assert!(error.contains("vendor-hash to 64 zeros"), "{error}");

        let mut other = Command::new("sh");
        other.args(["-c", "echo 'something else' >&2; exit 1"]);
        let error = list_packages(other).expect_err("failed").to_string();
        assert!(!error.contains("vendor-hash"), "{error}");
    }

    #[test]
    fn scratch_is_beside_the_output_cleared_first_and_removed_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("0123-etcd");
        fs::create_dir(&out).expect("out");
        // What a killed build left: a read-write tree, as Go's caches are.
        let stale = dir.path().join("0123-etcd.go-build");
        fs::create_dir_all(stale.join("cache/00")).expect("stale");
        fs::write(stale.join("cache/00/entry"), "old").expect("stale file");
        let scratch = Scratch::beside(&out, "go-build").expect("scratch");
        assert_eq!(scratch.path(), stale);
        assert!(
            !stale.join("cache").exists(),
            "the killed build's remains are gone"
        );
        assert!(stale.join("tmp").is_dir(), "GOTMPDIR is inside");
        fs::write(stale.join("tmp/work"), "x").expect("write");
        drop(scratch);
        assert!(!stale.exists());
        assert!(out.is_dir(), "the output is left alone");
    }

    fn recipe() -> GoRecipe {
        GoRecipe {
            module: "k8s.io/kubernetes".into(),
            require: Vec::new(),
            local_replace_version: Some("v0.{minor}.{patch}".into()),
            tags: vec!["notest".into()],
            cgo: false,
            ldflags: vec!["-X v=v{version}".into()],
            binaries: [(
                "kubelet".to_owned(),
                "k8s.io/kubernetes/cmd/kubelet".to_owned(),
            )]
            .into(),
            tests: BTreeMap::new(),
            files: BTreeMap::new(),
            data: Vec::new(),
        }
    }

    #[test]
    fn the_wrapper_replaces_local_replaces_and_lists_tools() {
        let modules = GoModules::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let upstream: ModFile = serde_json::from_str(
            r#"{"Go":"1.26.0","Godebug":[{"Key":"default","Value":"go1.26"}],
                "Replace":[{"Old":{"Path":"k8s.io/api"},"New":{"Path":"./staging/src/k8s.io/api"}},
                           {"Old":{"Path":"example.com/x"},"New":{"Path":"example.com/y","Version":"v1.0.0"}}]}"#,
        )
        .expect("JSON");
        expect_test::expect![[r#"
            module kiln.local/kubernetes

            go 1.26.0

            godebug default=go1.26

            require k8s.io/kubernetes v1.37.2

            tool k8s.io/kubernetes/cmd/kubelet

            replace (
            	k8s.io/api => k8s.io/api v0.37.2
            )
        "#]]
        .assert_eq(&modules.wrapper_go_mod(&upstream).expect("a go.mod"));
    }

    #[test]
    fn identities_change_with_the_toolchain() {
        let old = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let new = GoBuild::new("kubernetes", "1.37.2", "1.27.3", &recipe());
        assert_ne!(old.params(), new.params());
        let old = GoModules::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let new = GoModules::new("kubernetes", "1.37.2", "1.27.3", &recipe());
        assert_ne!(old.params(), new.params());
    }

    #[test]
    fn data_is_part_of_both_identities_only_when_there_is_some() {
        let mut with_data = recipe();
        with_data.data = vec!["cfg".into()];
        let plain = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let shipped = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &with_data);
        assert_ne!(plain.params(), shipped.params());
        assert!(!String::from_utf8_lossy(plain.params().as_bytes()).contains("data"));
        let plain = GoModules::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let shipped = GoModules::new("kubernetes", "1.37.2", "1.26.8", &with_data);
        assert_ne!(plain.params(), shipped.params());
    }

    #[test]
    fn tests_are_part_of_the_compile_identity_only_when_there_are_some() {
        let mut with_tests = recipe();
        with_tests.tests.insert("e2e.test".into(), "./e2e".into());
        let plain = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        let tested = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &with_tests);
        assert_ne!(plain.params(), tested.params());
        assert!(!String::from_utf8_lossy(plain.params().as_bytes()).contains("tests"));
    }

    #[test]
    fn data_entries_are_copied_as_files_and_trees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let module = dir.path().join("module");
        fs::create_dir_all(module.join("cfg/cis-1.11")).expect("mkdir");
        fs::write(module.join("cfg/config.yaml"), "version_mapping:\n").expect("write");
        fs::write(module.join("cfg/cis-1.11/master.yaml"), "controls:\n").expect("write");
        fs::write(module.join("LICENSE"), "license").expect("write");
        let out = dir.path().join("out");
        copy_entry(&module.join("cfg"), &out.join("share/tool/cfg")).expect("a tree");
        copy_entry(&module.join("LICENSE"), &out.join("share/tool/LICENSE")).expect("a file");
        assert_eq!(
            fs::read_to_string(out.join("share/tool/cfg/cis-1.11/master.yaml")).expect("read"),
            "controls:\n"
        );
        let mode = fs::metadata(out.join("share/tool/LICENSE"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(copy_entry(&module.join("absent"), &out.join("x")).is_err());
    }

    /// The compile's digest ignores kiln's recipe (it takes minutes), so its parameters alone
    /// decide when it reruns: these bytes must change only when the compile does. Written
    /// against the `serde_json::json!` encoding this replaced, so the store's compiles stayed.
    #[test]
    fn params_are_pinned() {
        let build = GoBuild::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        expect_test::expect![[r#"{"binaries":{"kubelet":"k8s.io/kubernetes/cmd/kubelet"},"cgo":false,"ldflags":["-X v=v{version}"],"package":"kubernetes","tags":["notest"],"target":["linux","amd64","v1"],"toolchain":"1.26.8","version":"1.37.2"}"#]]
            .assert_eq(std::str::from_utf8(build.params().as_bytes()).expect("JSON is UTF-8"));
        let modules = GoModules::new("kubernetes", "1.37.2", "1.26.8", &recipe());
        expect_test::expect![[r#"{"files":{},"local-replace-version":"v0.37.2","module":"k8s.io/kubernetes","package":"kubernetes","require":[],"toolchain":"1.26.8","tools":["k8s.io/kubernetes/cmd/kubelet"],"version":"1.37.2"}"#]]
            .assert_eq(std::str::from_utf8(modules.params().as_bytes()).expect("JSON is UTF-8"));
    }
}
