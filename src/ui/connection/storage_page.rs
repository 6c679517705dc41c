//! Connection Details → Storage: the pools and their volumes.

use adw::prelude::*;

use crate::ui::gettext;

pub struct StoragePage {
    root: adw::PreferencesPage,
}

impl StoragePage {
    pub fn new() -> Self {
        let root = adw::PreferencesPage::new();
        let group = adw::PreferencesGroup::builder()
            .title(gettext("Storage Pools"))
            .build();
        root.add(&group);
        StoragePage { root }
    }

    pub fn widget(&self) -> &adw::PreferencesPage {
        &self.root
    }
}
