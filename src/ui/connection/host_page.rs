//! Connection Details → Overview: what the host offers VMs.

use adw::prelude::*;

use crate::ui::gettext;

pub struct HostPage {
    root: adw::PreferencesPage,
}

impl HostPage {
    pub fn new() -> Self {
        let root = adw::PreferencesPage::new();
        let group = adw::PreferencesGroup::builder()
            .title(gettext("Host"))
            .build();
        root.add(&group);
        HostPage { root }
    }

    pub fn widget(&self) -> &adw::PreferencesPage {
        &self.root
    }
}
