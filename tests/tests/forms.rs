//! Readable forms in the officer's language, on the real binary against real nodes: `show`
//! lays a received request out in labelled sections in the language of the node's `node.toml`
//! or of `--lang`, `template KIND --lang CODE` translates the help but not the keys, and an
//! unknown language code is refused with the supported ones listed.

mod common;

use std::path::{Path, PathBuf};

use quickfreeze_node::config::files;
use quickfreeze_proto::payload::{example_preservation, Payload};

use common::{fixture, run, send_and_wait};

/// Runs the CLI off the runtime's threads (the daemons share them), for the node in `dir`.
async fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let dir: PathBuf = dir.to_path_buf();
    let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    args.push("--data-dir".into());
    args.push(dir.display().to_string());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &args)
    })
    .await
    .expect("cli")
}

async fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let output = cli(dir, args).await;
    assert!(
        output.status.success(),
        "quickfreeze {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sets `language` in the node.toml of `dir`, keeping everything else.
fn set_language(dir: &Path, code: &str) {
    let path = dir.join(files::CONFIG);
    let text = std::fs::read_to_string(&path).expect("node.toml");
    let mut table: toml::Table = toml::from_str(&text).expect("node.toml parses");
    table.insert("language".into(), toml::Value::String(code.into()));
    std::fs::write(&path, toml::to_string(&table).expect("toml")).expect("write node.toml");
}

fn without_comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_and_template_speak_the_officers_language() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    set_language(fr_dir, "fr");
    let _de = fixture.start(0).await;
    let _fr = fixture.start(1).await;
    let mut request = example_preservation();
    request.header.language = "de".into();
    request.offence = "Erpressung mit Ransomware".into();
    let id = send_and_wait(de_dir, "FR", Payload::Preservation(request)).await;

    // The French node's officer reads French labels by default; the German text stays as
    // written, with its declared language.
    let french = cli_ok(fr_dir, &["show", &id]).await;
    assert!(
        french.contains("DEMANDE DE CONSERVATION RAPIDE"),
        "{french}"
    );
    assert!(
        french.contains("a) Autorité qui demande la conservation"),
        "{french}"
    );
    assert!(
        french.contains("f) Intention de soumettre une demande d'entraide"),
        "{french}"
    );
    assert!(french.contains("Erpressung mit Ransomware"), "{french}");
    assert!(french.contains("Langue du texte"), "{french}");
    assert!(
        french.contains(" de (le texte libre est affiché"),
        "{french}"
    );
    assert!(
        !french.contains("mla_intent"),
        "raw field names shown:\n{french}"
    );

    // --lang overrides the configuration.
    let german = cli_ok(fr_dir, &["show", &id, "--lang", "de"]).await;
    assert!(
        german.contains("ERSUCHEN UM UMGEHENDE SICHERUNG"),
        "{german}"
    );
    assert!(
        german.contains("a) Behörde, die um Sicherung ersucht"),
        "{german}"
    );
    assert!(german.contains("90 Tage"), "{german}");
    assert!(german.contains("Erpressung mit Ransomware"), "{german}");
    for line in german
        .lines()
        .skip_while(|line| !line.starts_with("ERSUCHEN"))
    {
        assert!(line.chars().count() <= 80, "too wide: `{line}`");
    }

    // The sending side's node has no language set: English.
    let english = cli_ok(de_dir, &["show", &id]).await;
    assert!(
        english.contains("(a) Authority seeking the preservation"),
        "{english}"
    );

    // An unknown code is refused with the supported ones.
    let refused = cli(fr_dir, &["show", &id, "--lang", "xx"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("en, fr, de, es, pt"), "{stderr}");

    // Templates: French help, the same keys as English, so the form still parses.
    let template_fr = cli_ok(fr_dir, &["template", "preservation", "--lang", "fr"]).await;
    let template_en = cli_ok(fr_dir, &["template", "preservation", "--lang", "en"]).await;
    assert!(
        template_fr.starts_with("# DEMANDE DE CONSERVATION RAPIDE"),
        "{template_fr}"
    );
    assert!(template_fr.contains("\noffence = \"\"\n"), "{template_fr}");
    assert_eq!(
        without_comments(&template_fr),
        without_comments(&template_en)
    );
    assert_ne!(template_fr, template_en);
    // Without --lang, the node's configured language.
    let template_default = cli_ok(fr_dir, &["template", "preservation"]).await;
    assert_eq!(template_default, template_fr);
    let refused = cli(fr_dir, &["template", "preservation", "--lang", "klingon"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("en, fr, de, es, pt"), "{stderr}");
}
