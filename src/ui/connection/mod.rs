//! Connection Details, as virt-manager calls it: the host's overview and
//! its storage pools, in a window of their own so they stay open beside a
//! VM's console.
//!
//! ```text
//! AdwWindow
//! └─ GtkBox: AdwHeaderBar (AdwViewSwitcherTitle) + AdwViewStack
//!    ├─ "overview": the host (host_page)
//!    └─ "storage": pools and volumes (storage_page)
//! ```

mod host_page;
mod storage_page;

use adw::prelude::*;

use super::gettext;

/// The pages of the window, for the menu items that open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Storage,
}

impl Page {
    fn stack_name(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Storage => "storage",
        }
    }
}

pub struct ConnectionWindow {
    window: adw::Window,
    stack: adw::ViewStack,
}

impl ConnectionWindow {
    pub fn new(parent: &impl IsA<gtk::Window>) -> Self {
        let stack = adw::ViewStack::new();
        stack
            .add_titled(
                host_page::HostPage::new().widget(),
                Some(Page::Overview.stack_name()),
                &gettext("Overview"),
            )
            .set_icon_name(Some("computer-symbolic"));
        stack
            .add_titled(
                storage_page::StoragePage::new().widget(),
                Some(Page::Storage.stack_name()),
                &gettext("Storage"),
            )
            .set_icon_name(Some("drive-harddisk-symbolic"));
        let switcher = adw::ViewSwitcherTitle::builder()
            .stack(&stack)
            .title(gettext("Connection Details"))
            .build();
        let header = adw::HeaderBar::builder().title_widget(&switcher).build();
        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        content.append(&header);
        content.append(&stack);
        let window = adw::Window::builder()
            .title(gettext("Connection Details"))
            .transient_for(parent)
            .default_width(860)
            .default_height(620)
            .hide_on_close(true)
            .content(&content)
            .build();
        ConnectionWindow { window, stack }
    }

    /// Shows the window (again) on `page`.
    pub fn present(&self, page: Page) {
        self.stack.set_visible_child_name(page.stack_name());
        self.window.present();
    }
}
