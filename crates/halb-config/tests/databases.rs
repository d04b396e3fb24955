//! Database checks (`kind = "postgres" | "redis" | "mysql"`, `role`,
//! credentials)
//! and `[pool] on_down`.

mod support;

use halb_config::{parse, DatabaseCheck, HealthCheckKind, OnDown, Password, Role};
use support::{only_error, MINIMAL};

/// MINIMAL with a TCP listener and `keys` in `[pool.health_check]`;
/// `pool_keys` go in `[[pool]]`.
fn with_check(pool_keys: &str, keys: &str) -> String {
    MINIMAL
        .replace("pool = \"app\"\n", "pool = \"app\"\nprotocol = \"tcp\"\n")
        .replace(
            "[[pool.backend]]",
            &format!("{pool_keys}\n[pool.health_check]\n{keys}\n\n[[pool.backend]]"),
        )
}

#[test]
fn a_primary_check_with_its_defaults_closes_on_down() {
    let config = parse(&with_check("", "kind = \"postgres\"\nrole = \"primary\"")).unwrap();
    let pool = &config.pools[0];
    assert_eq!(pool.health_check.kind, HealthCheckKind::Postgres);
    assert_eq!(
        pool.health_check.database,
        Some(DatabaseCheck {
            role: Role::Primary,
            ..DatabaseCheck::default()
        })
    );
    assert_eq!(pool.on_down, OnDown::Close);
}

#[test]
fn other_roles_keep_connections_unless_told() {
    let config = parse(&with_check("", "kind = \"redis\"\nrole = \"replica\"")).unwrap();
    assert_eq!(config.pools[0].on_down, OnDown::Keep);
    let config = parse(&with_check("", "kind = \"redis\"")).unwrap();
    assert_eq!(
        config.pools[0].health_check.database.as_ref().unwrap().role,
        Role::Any
    );
    let config = parse(&with_check(
        "on_down = \"close\"",
        "kind = \"redis\"\nrole = \"replica\"",
    ))
    .unwrap();
    assert_eq!(config.pools[0].on_down, OnDown::Close);
    let config = parse(&with_check(
        "on_down = \"keep\"",
        "kind = \"postgres\"\nrole = \"primary\"",
    ))
    .unwrap();
    assert_eq!(config.pools[0].on_down, OnDown::Keep);
    assert_eq!(parse(MINIMAL).unwrap().pools[0].on_down, OnDown::Keep);
}

#[test]
fn credentials_are_read() {
    let config = parse(&with_check(
        "",
        "kind = \"postgres\"\nuser = \"halb\"\npassword_env = \"HALB_PG_PASSWORD\"\ndatabase = \"app\"",
    ))
    .unwrap();
    let db = config.pools[0].health_check.database.clone().unwrap();
    assert_eq!(db.user.as_deref(), Some("halb"));
    assert_eq!(db.password, Password::Env("HALB_PG_PASSWORD".into()));
    assert_eq!(db.database.as_deref(), Some("app"));
    let config = parse(&with_check("", "kind = \"redis\"\npassword = \"s3cret\"")).unwrap();
    let db = config.pools[0].health_check.database.clone().unwrap();
    assert_eq!(db.password, Password::Literal("s3cret".into()));
    assert!(
        !format!("{db:?}").contains("s3cret"),
        "a password never shows in debug output"
    );
}

#[test]
fn a_mysql_check_takes_the_same_keys() {
    let config = parse(&with_check(
        "",
        "kind = \"mysql\"\nrole = \"primary\"\nuser = \"halb\"\npassword_env = \"HALB_MYSQL_PASSWORD\"\ndatabase = \"app\"",
    ))
    .unwrap();
    let pool = &config.pools[0];
    assert_eq!(pool.health_check.kind, HealthCheckKind::Mysql);
    assert_eq!(
        pool.health_check.database,
        Some(DatabaseCheck {
            role: Role::Primary,
            user: Some("halb".into()),
            password: Password::Env("HALB_MYSQL_PASSWORD".into()),
            database: Some("app".into()),
        })
    );
    assert_eq!(pool.on_down, OnDown::Close);
    let config = parse(&with_check("", "kind = \"mysql\"")).unwrap();
    assert_eq!(
        config.pools[0].health_check.database,
        Some(DatabaseCheck::default())
    );
    let error = only_error(&with_check("", "kind = \"mysq\""));
    assert_eq!(error.path, "pool[0].health_check.kind");
    assert!(error.message.contains("did you mean \"mysql\""), "{error}");
}

#[test]
fn database_keys_on_other_kinds_are_refused() {
    let error = only_error(&with_check("", "kind = \"http\"\nrole = \"primary\""));
    assert_eq!(error.path, "pool[0].health_check.role");
    assert!(
        error.message.contains("only applies to database checks"),
        "{error}"
    );
    assert!(error.message.contains("\"mysql\""), "{error}");
    let error = only_error(&with_check("", "user = \"halb\""));
    assert_eq!(error.path, "pool[0].health_check.user");
    assert!(
        error.message.contains("the default when kind is not set"),
        "{error}"
    );
}

#[test]
fn bad_database_values_name_their_key() {
    let error = only_error(&with_check("", "kind = \"postgres\"\nrole = \"master\""));
    assert_eq!(error.path, "pool[0].health_check.role");
    assert!(error.message.contains("primary, replica, any"), "{error}");

    let error = only_error(&with_check(
        "",
        "kind = \"postgres\"\npassword = \"x\"\npassword_env = \"PG_PASS\"",
    ));
    assert_eq!(error.path, "pool[0].health_check.password_env");
    assert!(error.message.contains("both set"), "{error}");

    let error = only_error(&with_check(
        "",
        "kind = \"postgres\"\npassword_env = \"$PG\"",
    ));
    assert_eq!(error.path, "pool[0].health_check.password_env");

    let error = only_error(&with_check("", "kind = \"redis\"\ndatabase = \"0\""));
    assert_eq!(error.path, "pool[0].health_check.database");

    let error = only_error(&with_check("", "kind = \"postgress\""));
    assert_eq!(error.path, "pool[0].health_check.kind");
    assert!(
        error.message.contains("did you mean \"postgres\""),
        "{error}"
    );

    let error = only_error(&with_check("on_down = \"shutdown\"", "kind = \"redis\""));
    assert_eq!(error.path, "pool[0].on_down");
    assert!(error.message.contains("close, keep"), "{error}");
}

#[test]
fn closing_on_down_needs_active_checks() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        "on_down = \"close\"\n\n[[pool.backend]]",
    );
    let error = only_error(&text);
    assert_eq!(error.path, "pool[0].on_down");
    assert!(error.message.contains("[pool.health_check]"), "{error}");
}
