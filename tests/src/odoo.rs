//! Real Odoo modules for the tests' repositories: a model with its access
//! rules and a manifest Odoo accepts, and what a test needs of a module's
//! behaviour written as Odoo code (fields, migration scripts that fill
//! them, raise or take their time).

/// One Odoo module, as the files a repository holds under `{name}/`.
#[derive(Clone, Debug)]
pub struct Module {
    pub name: String,
    /// The manifest's `version` (`1.0`, or the series' `17.0.1.0`).
    pub version: String,
    pub depends: Vec<String>,
    /// Fields of the module's model `{name}.record` beyond `name`:
    /// `(field, Odoo type)`, e.g. `("note", "Char")`.
    pub fields: Vec<(String, String)>,
    /// `migrations/{version}/{pre|post}-migrate.py`: `(version, phase, body
    /// of migrate(cr, version))`.
    pub migrations: Vec<(String, String, String)>,
}

impl Module {
    pub fn new(name: &str, version: &str) -> Module {
        Module {
            name: name.to_owned(),
            version: version.to_owned(),
            depends: vec!["base".to_owned()],
            fields: Vec::new(),
            migrations: Vec::new(),
        }
    }

    pub fn depends(mut self, on: &[&str]) -> Module {
        self.depends = on.iter().map(|d| (*d).to_owned()).collect();
        self
    }

    pub fn field(mut self, name: &str, kind: &str) -> Module {
        self.fields.push((name.to_owned(), kind.to_owned()));
        self
    }

    /// A migration script for `version`: `phase` is `pre` or `post`, `body`
    /// the indented-free lines of `migrate(cr, version)`.
    pub fn migration(mut self, version: &str, phase: &str, body: &str) -> Module {
        self.migrations
            .push((version.to_owned(), phase.to_owned(), body.to_owned()));
        self
    }

    /// The model's name and its table.
    pub fn model(&self) -> (String, String) {
        (
            format!("{}.record", self.name),
            format!("{}_record", self.name),
        )
    }

    /// The files, as `(path in the repository, content)`.
    pub fn files(&self) -> Vec<(String, String)> {
        let n = &self.name;
        let (model, table) = self.model();
        let manifest = format!(
            "{{\n    'name': '{n}',\n    'version': '{}',\n    'depends': {:?},\n    'data': ['security/ir.model.access.csv'],\n    'license': 'LGPL-3',\n}}\n",
            self.version, self.depends
        );
        let init = "from . import models\n".to_owned();
        let mut fields = String::from("    name = fields.Char()\n");
        for (f, kind) in &self.fields {
            fields.push_str(&format!("    {f} = fields.{kind}()\n"));
        }
        let class = format!(
            "from odoo import fields, models\n\n\nclass Record(models.Model):\n    _name = '{model}'\n    _description = '{n} record'\n\n{fields}"
        );
        let access = format!(
            "id,name,model_id:id,group_id:id,perm_read,perm_write,perm_create,perm_unlink\naccess_{table},{table},model_{table},base.group_user,1,1,1,1\n"
        );
        let mut files = vec![
            (format!("{n}/__manifest__.py"), manifest),
            (format!("{n}/__init__.py"), init),
            (
                format!("{n}/models/__init__.py"),
                "from . import record\n".to_owned(),
            ),
            (format!("{n}/models/record.py"), class),
            (format!("{n}/security/ir.model.access.csv"), access),
        ];
        for (version, phase, body) in &self.migrations {
            let body: String = body.lines().map(|l| format!("    {l}\n")).collect();
            files.push((
                format!("{n}/migrations/{version}/{phase}-migrate.py"),
                format!("def migrate(cr, version):\n{body}"),
            ));
        }
        files
    }
}

/// Borrows `(path, content)` pairs as the git helpers take them.
pub fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect()
}
