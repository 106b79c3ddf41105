//! Tests of the command line: how `neo` parses the client commands and the global options.

use clap::{CommandFactory as _, Parser};

use super::commands::{app, build, canary, deploy, events, login, publish, tenant};
use super::*;

/// The client half of `neo`'s command line.
#[derive(Debug, Parser)]
#[command(name = "neo")]
struct T {
    #[command(flatten)]
    g: GlobalArgs,
    #[command(subcommand)]
    c: ClientCommand,
}

fn parse(args: &[&str]) -> T {
    T::try_parse_from(std::iter::once("neo").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn the_command_line_is_well_formed() {
    T::command().debug_assert();
}

#[test]
fn login_takes_the_global_endpoint_and_tenant() {
    let t = parse(&[
        "login",
        "--endpoint",
        "http://127.0.0.1:50051",
        "--user",
        "alice",
        "--tenant",
        "acme",
        "--password-stdin",
    ]);
    assert_eq!(t.g.endpoint.as_deref(), Some("http://127.0.0.1:50051"));
    assert_eq!(t.g.tenant.as_deref(), Some("acme"));
    let ClientCommand::Login(args) = t.c else {
        panic!("not login: {:?}", t.c)
    };
    assert_eq!(args.user.as_deref(), Some("alice"));
    assert!(args.password_stdin);
}

#[test]
fn global_options_go_anywhere_and_have_defaults() {
    let t = parse(&["tenant", "list"]);
    assert_eq!(t.g.output, OutputFormat::Table);
    assert_eq!(t.g.timeout, 30);
    let t = parse(&[
        "app",
        "list",
        "--output",
        "json",
        "--timeout",
        "5",
        "--tenant",
        "x",
    ]);
    assert_eq!(t.g.output, OutputFormat::Json);
    assert_eq!(t.g.timeout, 5);
    assert_eq!(t.g.tenant.as_deref(), Some("x"));
    let t = parse(&["-o", "json", "--config", "/tmp/c.toml", "whoami"]);
    assert_eq!(
        t.g.config.as_deref(),
        Some(std::path::Path::new("/tmp/c.toml"))
    );
    assert!(T::try_parse_from(["neo", "whoami", "--output", "yaml"]).is_err());
}

#[test]
fn tenant_create_takes_repeated_stages() {
    let t = parse(&[
        "tenant", "create", "acme", "--stage", "dev", "--stage", "prod", "--admin", "alice",
    ]);
    let ClientCommand::Tenant {
        command: tenant::TenantCommand::Create(args),
    } = t.c
    else {
        panic!("not tenant create: {:?}", t.c)
    };
    assert_eq!(args.name, "acme");
    assert_eq!(args.stages, ["dev", "prod"]);
    assert_eq!(args.admin.as_deref(), Some("alice"));
    assert_eq!(args.display_name, None);
}

#[test]
fn member_roles_are_words() {
    let t = parse(&["tenant", "member", "set", "bob", "devops"]);
    assert!(matches!(
        t.c,
        ClientCommand::Tenant {
            command: tenant::TenantCommand::Member {
                command: tenant::MemberCommand::Set {
                    role: tenant::RoleArg::Devops,
                    ..
                }
            }
        }
    ));
    assert!(T::try_parse_from(["neo", "tenant", "member", "set", "bob", "owner"]).is_err());
}

#[test]
fn upload_build_and_deploy_commands_parse() {
    let t = parse(&["app", "upload", "shop", "./model", "-m", "first"]);
    let ClientCommand::App {
        command: app::AppCommand::Upload(args),
    } = t.c
    else {
        panic!("not upload: {:?}", t.c)
    };
    assert_eq!(args.path, std::path::PathBuf::from("./model"));
    assert_eq!(args.message.as_deref(), Some("first"));

    let t = parse(&["build", "request", "shop", "2"]);
    assert!(matches!(
        t.c,
        ClientCommand::Build {
            command: build::BuildCommand::Request { revision: 2, .. }
        }
    ));
    let t = parse(&["deploy", "shop", "--stage", "dev", "--revision", "2"]);
    assert!(matches!(
        t.c,
        ClientCommand::Deploy(deploy::DeployArgs { revision: 2, .. })
    ));
    let t = parse(&["rollback", "shop", "--stage", "prod", "--to", "v1"]);
    assert!(matches!(
        t.c,
        ClientCommand::Rollback(deploy::RollbackArgs { to: 1, .. })
    ));
    assert!(T::try_parse_from(["neo", "deploy", "shop", "--stage", "dev"]).is_err());
}

#[test]
fn publish_defaults_to_the_current_directory() {
    let t = parse(&["publish"]);
    let ClientCommand::Publish(args) = t.c else {
        panic!("not publish: {:?}", t.c)
    };
    assert_eq!(args.dir, std::path::PathBuf::from("."));
    assert_eq!((args.app, args.stage, args.message), (None, None, None));
    assert_eq!(args.wait, 120, "waits for the release to serve");
    let t = parse(&[
        "publish", "./shop", "--app", "shop", "--stage", "test", "-m", "first", "--wait", "0",
    ]);
    let ClientCommand::Publish(publish::PublishArgs {
        dir,
        app,
        stage,
        message,
        wait,
    }) = t.c
    else {
        panic!("not publish: {:?}", t.c)
    };
    assert_eq!(dir, std::path::PathBuf::from("./shop"));
    assert_eq!(app.as_deref(), Some("shop"));
    assert_eq!(stage.as_deref(), Some("test"));
    assert_eq!(message.as_deref(), Some("first"));
    assert_eq!(wait, 0);
}

#[test]
fn impact_build_log_and_forced_deploys_parse() {
    let t = parse(&["impact", "catalog", "--stage", "dev", "--revision", "3"]);
    let ClientCommand::Impact(args) = t.c else {
        panic!("not impact: {:?}", t.c)
    };
    assert_eq!(
        (args.target.app.as_str(), args.target.stage.as_str()),
        ("catalog", "dev")
    );
    assert_eq!(args.revision, 3);
    assert!(T::try_parse_from(["neo", "impact", "catalog", "--revision", "3"]).is_err());

    let t = parse(&["build", "log", "shop_r2", "-f"]);
    assert!(matches!(
        t.c,
        ClientCommand::Build {
            command: build::BuildCommand::Log { follow: true, .. }
        }
    ));
    let t = parse(&["build", "log", "shop_r2"]);
    assert!(matches!(
        t.c,
        ClientCommand::Build {
            command: build::BuildCommand::Log { follow: false, .. }
        }
    ));

    let t = parse(&[
        "deploy",
        "shop",
        "--stage",
        "dev",
        "--revision",
        "2",
        "--force",
    ]);
    assert!(matches!(
        t.c,
        ClientCommand::Deploy(deploy::DeployArgs { force: true, .. })
    ));
    let t = parse(&["deploy", "shop", "--stage", "dev", "--revision", "2"]);
    assert!(matches!(
        t.c,
        ClientCommand::Deploy(deploy::DeployArgs { force: false, .. })
    ));
}

#[test]
fn events_watch_takes_its_filters() {
    let t = parse(&[
        "events",
        "watch",
        "--kind",
        "app",
        "--type",
        "revision_created",
        "--after",
        "9",
    ]);
    let ClientCommand::Events {
        command: events::EventsCommand::Watch(args),
    } = t.c
    else {
        panic!("not watch: {:?}", t.c)
    };
    assert_eq!(args.kind.as_deref(), Some("app"));
    assert_eq!(args.event_type.as_deref(), Some("revision_created"));
    assert_eq!(args.after, 9);
    assert_eq!(args.entity, None);
}

#[test]
fn user_create_reads_the_password_from_stdin_when_asked() {
    let t = parse(&["user", "create", "bob", "--password-stdin"]);
    assert!(matches!(
        t.c,
        ClientCommand::User {
            command: login::UserCommand::Create {
                password_stdin: true,
                ..
            }
        }
    ));
}

#[test]
fn the_public_parser_splits_global_options_from_the_command() {
    let (global, command) =
        crate::parse(["neo", "releases", "shop", "-s", "prod", "--tenant", "acme"]).unwrap();
    assert_eq!(global.tenant.as_deref(), Some("acme"));
    assert!(matches!(command, ClientCommand::Releases(_)));
    let error = crate::parse(["neo", "serve"]).unwrap_err();
    assert_eq!(error.exit_code(), 2);
}

/// The path of subcommand names `matches` selected, e.g. `["tenant", "member", "set"]`.
fn chosen(matches: &clap::ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        path.push(name.to_owned());
        at = sub;
    }
    path
}

/// Every command without subcommands, with its path of names.
fn leaves(command: &clap::Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        path.push(sub.get_name().to_owned());
        if sub.has_subcommands() {
            leaves(sub, path, out);
        } else {
            let help = sub.get_after_help().map(ToString::to_string);
            out.push((path.clone(), help.unwrap_or_default()));
        }
        path.pop();
    }
}

#[test]
fn every_command_shows_examples_and_each_parses_as_that_command() {
    let mut commands = Vec::new();
    leaves(&T::command(), &mut Vec::new(), &mut commands);
    assert!(commands.len() > 40, "{commands:?}");
    for (path, help) in commands {
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| *l != "Examples:")
            .skip(1)
            .map(str::trim)
            .collect();
        assert!(
            !examples.is_empty(),
            "`neo {}` shows no examples",
            path.join(" ")
        );
        for example in examples {
            let words = shlex::split(example).unwrap_or_else(|| panic!("{example}"));
            let matches = T::command()
                .try_get_matches_from(&words)
                .unwrap_or_else(|e| panic!("{example}: {e}"));
            assert_eq!(chosen(&matches), path, "{example}");
        }
    }
}

#[test]
fn every_command_names_an_app_first_and_a_stage_with_stage() {
    // The same app and stage in every command that takes both.
    for args in [
        &["deploy", "shop", "--stage", "dev", "--revision", "1"][..],
        &["impact", "shop", "--stage", "dev", "--revision", "1"],
        &["promote", "shop", "--stage", "dev"],
        &["rollback", "shop", "--stage", "dev", "--to", "1"],
        &["releases", "shop", "--stage", "dev"],
        &["deployment", "get", "shop", "--stage", "dev"],
        &["scale", "shop", "--stage", "dev", "--max", "2"],
        &["settings", "list", "shop", "--stage", "dev"],
        &["secrets", "list", "shop", "--stage", "dev"],
        &["status", "shop", "--stage", "dev"],
        &["logs", "shop", "--stage", "dev"],
    ] {
        let t = parse(args);
        let short: Vec<&str> = args
            .iter()
            .map(|a| if *a == "--stage" { "-s" } else { a })
            .collect();
        assert_eq!(format!("{:?}", parse(&short).c), format!("{:?}", t.c));
        // The stage is never a second positional argument.
        let positional: Vec<&str> = args.iter().copied().filter(|a| *a != "--stage").collect();
        assert!(
            T::try_parse_from(std::iter::once("neo").chain(positional)).is_err(),
            "{args:?}"
        );
        let shown = format!("{:?}", t.c);
        assert!(
            shown.contains("app: \"shop\"") || shown.contains("Some(\"shop\")"),
            "{shown}"
        );
        assert!(shown.contains("\"dev\""), "{shown}");
    }
}

#[test]
fn scale_sets_min_zero_with_an_idle_window_and_keeps_the_rest() {
    let t = parse(&[
        "scale",
        "shop",
        "--stage",
        "dev",
        "--min",
        "0",
        "--idle-to-zero",
        "10m",
    ]);
    let ClientCommand::Scale(args) = t.c else {
        panic!("not scale: {:?}", t.c);
    };
    let current = neo_protocol::pb::ScalePolicy {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: 300,
        idle_to_zero_s: 0,
    };
    assert_eq!(
        args.policy.over(current),
        neo_protocol::pb::ScalePolicy {
            min_replicas: 0,
            idle_to_zero_s: 600,
            ..current
        }
    );
}

#[test]
fn canary_commands_parse() {
    let t = parse(&["promote", "shop", "-s", "prod", "--canary"]);
    assert!(matches!(
        t.c,
        ClientCommand::Promote(deploy::PromoteArgs { canary: true, .. })
    ));
    let t = parse(&[
        "canary",
        "policy",
        "shop",
        "-s",
        "prod",
        "--steps",
        "10,25,50",
        "--step",
        "2m",
        "--max-error-increase",
        "0.5",
        "--sticky",
    ]);
    let ClientCommand::Canary {
        command: canary::CanaryCommand::Policy(args),
    } = t.c
    else {
        panic!("not canary policy: {:?}", t.c)
    };
    assert_eq!(args.steps, Some(vec![10, 25, 50]));
    assert_eq!(args.step, Some(120));
    assert_eq!(args.max_error_increase, Some(0.5));
    assert!(args.sticky);
    assert_eq!((args.max_p95_ratio, args.min_requests), (None, None));
    let t = parse(&["canary", "abort", "shop", "-s", "prod", "--reason", "slow"]);
    assert!(matches!(
        t.c,
        ClientCommand::Canary {
            command: canary::CanaryCommand::Abort(canary::AbortArgs { ref reason, .. })
        } if reason == "slow"
    ));
    assert!(T::try_parse_from(["neo", "canary", "promote", "shop"]).is_err());
}
