//! virsh's snapshot verbs: snapshot-create-as, snapshot-create,
//! snapshot-list (its table, `--parent`, `--tree`, `--name`),
//! snapshot-info, snapshot-dumpxml, snapshot-current, snapshot-revert and
//! snapshot-delete, printing what virsh prints. The work is
//! `app::snapshots`'; a running domain is refused for now.

use std::path::PathBuf;
use std::process::ExitCode;

use super::disk_progress::with_disk_progress;
use super::domain::resolve;
use super::local_time::date_time_zone;
use super::table;
use crate::app::snapshots;
use crate::definitions::{Definition, SnapshotStore};
use crate::domain::snapshot::{SnapshotDef, SnapshotDisk};

type CliResult = Result<ExitCode, String>;

#[derive(clap::Args)]
pub struct CreateAsArgs {
    domain: String,
    /// Name of the snapshot (default: the creation time in seconds).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
    name_flag: Option<String>,
    /// Description of the snapshot.
    #[arg(long)]
    description: Option<String>,
    /// Print the snapshot's XML instead of taking it.
    #[arg(long)]
    print_xml: bool,
    /// Leave the disks' images as they are and put a qcow2 overlay in
    /// front of each (an external snapshot).
    #[arg(long)]
    disk_only: bool,
    /// How to snapshot one disk: DISK[,snapshot=internal|external|no]
    /// [,driver=qcow2][,file=OVERLAY].
    #[arg(long, value_name = "DISKSPEC")]
    diskspec: Vec<String>,
}

/// virsh's `--diskspec disk[,snapshot=type][,driver=type][,stype=file][,file=name]`
/// (`,,` is a comma in a value).
fn parse_diskspec(spec: &str) -> Result<SnapshotDisk, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                field.push(',');
                continue;
            }
            fields.push(std::mem::take(&mut field));
        } else {
            field.push(c);
        }
    }
    fields.push(field);
    let mut fields = fields.into_iter();
    let name = fields.next().unwrap_or_default();
    if name.is_empty() {
        return Err(format!("invalid argument: diskspec '{spec}' names no disk"));
    }
    let mut disk = SnapshotDisk {
        name,
        snapshot: None,
        source: None,
        driver_type: None,
    };
    for field in fields {
        match field.split_once('=') {
            Some(("snapshot", kind)) => disk.snapshot = Some(kind.to_string()),
            Some(("driver", format)) => disk.driver_type = Some(format.to_string()),
            Some(("file", file)) => disk.source = Some(file.to_string()),
            Some(("stype", "file")) => {}
            _ => {
                return Err(format!(
                    "invalid argument: unable to parse diskspec: {spec}"
                ))
            }
        }
    }
    Ok(disk)
}

#[derive(clap::Args)]
pub struct CreateArgs {
    domain: String,
    /// A <domainsnapshot> description (default: a snapshot named by its time).
    xmlfile: Option<PathBuf>,
    /// Put a qcow2 overlay in front of each disk (an external snapshot).
    #[arg(long)]
    disk_only: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pick: PickArgs,
    /// Remove only the snapshot's description; the disks stay as they are.
    #[arg(long)]
    metadata: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    domain: String,
    /// Add a column with each snapshot's parent.
    #[arg(long)]
    parent: bool,
    /// Draw the snapshots as a tree of parents and children.
    #[arg(long, conflicts_with = "parent")]
    tree: bool,
    /// Print only names.
    #[arg(long)]
    name: bool,
}

/// A snapshot named on the command line, or the current one.
#[derive(clap::Args)]
pub struct PickArgs {
    domain: String,
    #[arg(value_name = "SNAPSHOT")]
    snapshotname: Option<String>,
    /// The current snapshot.
    #[arg(long, conflicts_with = "snapshotname")]
    current: bool,
}

#[derive(clap::Args)]
pub struct DumpxmlArgs {
    domain: String,
    #[arg(value_name = "SNAPSHOT")]
    snapshotname: String,
}

#[derive(clap::Args)]
pub struct CurrentArgs {
    domain: String,
    /// Print only the name.
    #[arg(long)]
    name: bool,
    /// Make this snapshot the current one instead.
    #[arg(value_name = "SNAPSHOT")]
    snapshotname: Option<String>,
}

const NO_CURRENT: &str = "Domain snapshot not found: the domain does not have a current snapshot";

/// The domain and whether it runs.
fn domain(which: &str) -> Result<(Definition, bool), String> {
    let (definition, state) = resolve(which)?;
    Ok((definition, state.is_some()))
}

fn pick(store: &SnapshotStore, args: &PickArgs) -> Result<SnapshotDef, String> {
    match &args.snapshotname {
        Some(name) => store.get(name)?.ok_or_else(|| snapshots::not_found(name)),
        None if args.current => store.current()?.ok_or_else(|| NO_CURRENT.to_string()),
        None => Err("a snapshot name or --current is required".into()),
    }
}

pub fn create_as(args: CreateAsArgs) -> CliResult {
    let asked = SnapshotDef {
        name: args.name.or(args.name_flag).unwrap_or_default(),
        description: args.description,
        state: None,
        parent: None,
        creation_time: None,
        memory: args.disk_only.then(|| "no".to_string()),
        disks: args
            .diskspec
            .iter()
            .map(|spec| parse_diskspec(spec))
            .collect::<Result<_, _>>()?,
        domain: None,
        current: false,
    };
    if args.print_xml {
        print!("{}", asked.to_xml(false));
        return Ok(ExitCode::SUCCESS);
    }
    let (definition, running) = domain(&args.domain)?;
    let def = snapshots::create(&definition, &asked, args.disk_only, running)?;
    println!("Domain snapshot {} created", def.name);
    Ok(ExitCode::SUCCESS)
}

pub fn create(args: CreateArgs) -> CliResult {
    let (definition, running) = domain(&args.domain)?;
    let asked = match &args.xmlfile {
        Some(file) => {
            let xml = std::fs::read_to_string(file)
                .map_err(|e| format!("Failed to open file '{}': {e}", file.display()))?;
            SnapshotDef::parse(&xml).map_err(|e| e.to_string())?
        }
        None => SnapshotDef::parse("<domainsnapshot/>").map_err(|e| e.to_string())?,
    };
    let def = snapshots::create(&definition, &asked, args.disk_only, running)?;
    match &args.xmlfile {
        Some(file) => println!(
            "Domain snapshot {} created from '{}'",
            def.name,
            file.display()
        ),
        None => println!("Domain snapshot {} created", def.name),
    }
    Ok(ExitCode::SUCCESS)
}

/// virsh's `--tree` (vshTreePrint): each root, then its children under
/// `+- `, with `|` continuing the lines of siblings still to come.
pub fn tree(snapshots: &[SnapshotDef]) -> String {
    fn node(
        out: &mut String,
        all: &[SnapshotDef],
        index: usize,
        last: usize,
        root: bool,
        indent: &mut String,
    ) {
        let name = &all[index].name;
        out.push_str(&format!(
            "{indent}{}{name}\n",
            if root { "" } else { "+- " }
        ));
        if !root {
            indent.push(if index == last { ' ' } else { '|' });
            indent.push(' ');
        }
        let children: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].parent.as_deref() == Some(name))
            .collect();
        if let Some(&next_last) = children.last() {
            out.push_str(&format!("{indent}  |\n"));
            indent.push_str("  ");
            for child in &children {
                node(out, all, *child, next_last, false, indent);
            }
            indent.truncate(indent.len() - 2);
        } else {
            indent.push_str("  ");
            indent.truncate(indent.len() - 2);
            if index == last {
                out.push_str(&format!("{indent}\n"));
            }
        }
        if !root {
            indent.truncate(indent.len() - 2);
        }
    }
    let mut out = String::new();
    let known = |name: &str| snapshots.iter().any(|s| s.name == name);
    for (index, snapshot) in snapshots.iter().enumerate() {
        if !snapshot.parent.as_deref().is_some_and(known) {
            node(&mut out, snapshots, index, index, true, &mut String::new());
        }
    }
    out
}

pub fn list(args: ListArgs) -> CliResult {
    let (definition, _) = domain(&args.domain)?;
    let all = SnapshotStore::for_domain(&definition.name).list()?;
    if args.tree {
        print!("{}", tree(&all));
        println!();
        return Ok(ExitCode::SUCCESS);
    }
    if args.name {
        for snapshot in &all {
            println!("{}", snapshot.name);
        }
        println!();
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["Name", "Creation Time", "State"];
    if args.parent {
        header.push("Parent");
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let mut row = vec![
                s.name.clone(),
                date_time_zone(s.creation_time.unwrap_or(0)),
                s.state.clone().unwrap_or_default(),
            ];
            if args.parent {
                row.push(s.parent.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    print!("{}", table::render(&header, &rows));
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn info(args: PickArgs) -> CliResult {
    let (definition, _) = domain(&args.domain)?;
    let store = SnapshotStore::for_domain(&definition.name);
    let def = pick(&store, &args)?;
    let all = store.list()?;
    let children = all
        .iter()
        .filter(|s| s.parent.as_deref() == Some(def.name.as_str()))
        .count();
    // Descendants: everything whose chain of parents reaches this one.
    let descendants = all
        .iter()
        .filter(|s| {
            let mut parent = s.parent.clone();
            let mut steps = 0;
            while let Some(p) = parent {
                if p == def.name {
                    return true;
                }
                steps += 1;
                if steps > all.len() {
                    break;
                }
                parent = all
                    .iter()
                    .find(|x| x.name == p)
                    .and_then(|x| x.parent.clone());
            }
            false
        })
        .count();
    let lines = [
        ("Name:", def.name.clone()),
        ("Domain:", definition.name.clone()),
        ("Current:", if def.current { "yes" } else { "no" }.into()),
        ("State:", def.state.clone().unwrap_or_default()),
        (
            "Location:",
            if def.is_external() {
                "external"
            } else {
                "internal"
            }
            .into(),
        ),
        ("Parent:", def.parent.clone().unwrap_or_else(|| "-".into())),
        ("Children:", children.to_string()),
        ("Descendants:", descendants.to_string()),
        ("Metadata:", "yes".into()),
    ];
    for (label, value) in lines {
        println!("{label:<15} {value}");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn dumpxml(args: DumpxmlArgs) -> CliResult {
    let (definition, _) = domain(&args.domain)?;
    let store = SnapshotStore::for_domain(&definition.name);
    let def = store
        .get(&args.snapshotname)?
        .ok_or_else(|| snapshots::not_found(&args.snapshotname))?;
    print!("{}", def.to_xml(false));
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn current(args: CurrentArgs) -> CliResult {
    let (definition, _) = domain(&args.domain)?;
    let store = SnapshotStore::for_domain(&definition.name);
    if let Some(name) = &args.snapshotname {
        store.get(name)?.ok_or_else(|| snapshots::not_found(name))?;
        store.set_current(Some(name))?;
        println!("Snapshot {name} set as current");
        return Ok(ExitCode::SUCCESS);
    }
    let def = store.current()?.ok_or_else(|| NO_CURRENT.to_string())?;
    if args.name {
        println!("{}", def.name);
    } else {
        println!("{}", def.to_xml(false));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revert(args: PickArgs) -> CliResult {
    let (definition, running) = domain(&args.domain)?;
    let store = SnapshotStore::for_domain(&definition.name);
    let name = pick(&store, &args)?.name;
    snapshots::revert(&definition, &name, running)?;
    println!("Domain snapshot {name} reverted\n");
    Ok(ExitCode::SUCCESS)
}

pub fn delete(args: DeleteArgs) -> CliResult {
    let (definition, running) = domain(&args.pick.domain)?;
    let store = SnapshotStore::for_domain(&definition.name);
    let name = pick(&store, &args.pick)?.name;
    with_disk_progress("Merging", |progress| {
        snapshots::delete(&definition, &name, args.metadata, running, progress)
    })?;
    println!("Domain snapshot {name} deleted\n");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, parent: Option<&str>) -> SnapshotDef {
        let mut def = SnapshotDef::parse("<domainsnapshot/>").unwrap();
        def.name = name.into();
        def.parent = parent.map(str::to_string);
        def
    }

    #[test]
    fn tree_is_drawn_as_virsh_draws_it() {
        // What virsh -c test:///default printed for the same snapshots.
        let all = [
            snap("fromfile", Some("s3")),
            snap("s1", None),
            snap("s2", Some("s1")),
            snap("s3", Some("s1")),
        ];
        assert_eq!(
            tree(&all),
            "s1\n  |\n  +- s2\n  +- s3\n      |\n      +- fromfile\n        \n"
        );
        assert_eq!(tree(&[snap("only", None)]), "only\n\n");
    }

    #[test]
    fn diskspecs_are_read_as_virsh_reads_them() {
        let disk = parse_diskspec("vda,snapshot=external,driver=qcow2,file=/a,,b.qcow2").unwrap();
        assert_eq!(disk.name, "vda");
        assert_eq!(disk.snapshot.as_deref(), Some("external"));
        assert_eq!(disk.driver_type.as_deref(), Some("qcow2"));
        assert_eq!(disk.source.as_deref(), Some("/a,b.qcow2"));
        assert_eq!(parse_diskspec("vdb").unwrap().snapshot, None);
        for bad in ["", ",snapshot=no", "vda,colour=red", "vda,snapshot"] {
            assert!(parse_diskspec(bad).is_err(), "{bad:?}");
        }
    }
}
