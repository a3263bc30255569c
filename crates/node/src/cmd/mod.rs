//! One module per verb group; each function runs one verb.

pub(crate) mod authority;
pub(crate) mod catalog;
pub(crate) mod contract;
mod credential;
pub(crate) mod evidence;
mod inspect;
mod key;
pub(crate) mod log;
pub(crate) mod manifest;
pub(crate) mod policy;
pub(crate) mod witness;

use crate::cli::{AuthorityCommand, Command, CredentialCommand, KeyCommand};

pub(crate) fn dispatch(command: Command, force: bool) -> anyhow::Result<()> {
    crate::files::begin(force);
    match command {
        Command::Key(KeyCommand::New { out }) => key::new(&out, force),
        Command::Key(KeyCommand::Show { file }) => key::show(&file),
        Command::Key(KeyCommand::Encrypt { file }) => key::encrypt(&file),
        Command::Key(KeyCommand::Decrypt { file }) => key::decrypt(&file),
        Command::Authority(AuthorityCommand::Init { home, name }) => {
            authority::init(&home.home, &name)
        }
        Command::Authority(AuthorityCommand::Show { home }) => authority::show(&home.home),
        Command::Authority(AuthorityCommand::Serve(args)) => crate::node::authority::serve(&args),
        Command::Authority(AuthorityCommand::Requests { home }) => {
            crate::node::authority::list_requests(&home.home)
        }
        Command::Authority(AuthorityCommand::Approve(args)) => {
            crate::node::authority::approve(&args)
        }
        Command::Authority(AuthorityCommand::Reject(args)) => crate::node::authority::reject(&args),
        Command::Join(args) => crate::node::authority::join(&args),
        Command::Authority(AuthorityCommand::Admit(args)) => authority::admit(&args),
        Command::Authority(AuthorityCommand::Licence(args)) => authority::licence(&args),
        Command::Authority(AuthorityCommand::Revoke { home, serial }) => {
            authority::revoke(&home.home, serial)
        }
        Command::Authority(AuthorityCommand::Crl { home, days, out }) => {
            authority::crl(&home.home, days, &out)
        }
        Command::Authority(AuthorityCommand::Rollover { home, out }) => {
            authority::rollover(&home.home, &out)
        }
        Command::Credential(CredentialCommand::Verify(args)) => credential::verify(&args),
        Command::Credential(CredentialCommand::Install(args)) => crate::node::install(&args),
        Command::Init(args) => crate::node::init(&args),
        Command::Serve(args) => crate::node::serve(&args),
        Command::Status(args) => crate::node::status(&args),
        Command::Asset(c) => crate::node::verbs::asset(c),
        Command::Negotiate(a) => crate::node::verbs::negotiate(a),
        Command::Fetch(a) => crate::node::verbs::fetch(a),
        Command::Agreements(h) => crate::node::verbs::agreements(h),
        Command::Use(a) => crate::node::verbs::use_data(a),
        Command::Duties(h) => crate::node::verbs::duties(h),
        Command::Delete(a) => crate::node::verbs::delete(a),
        Command::Backup(a) => crate::node::backup::backup(&a),
        Command::Restore(a) => crate::node::backup::restore(&a),
        Command::Demo { keep } => crate::node::demo::demo(keep),
        Command::Inspect(args) => inspect::inspect(&args.file),
        Command::Manifest(c) => manifest::dispatch(c),
        Command::Catalog(c) => catalog::dispatch(c),
        Command::Log(c) => log::dispatch(c),
        Command::Witness(c) => witness::dispatch(c),
        Command::Evidence(c) => evidence::dispatch(c),
        Command::Policy(c) => policy::dispatch(c),
        Command::Offer(c) => contract::offer(c),
        Command::Contract(c) => contract::contract(c),
        Command::Agreement(c) => contract::agreement(c),
    }
}
