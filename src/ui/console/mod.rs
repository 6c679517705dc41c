//! The console: a VNC client on the VM's unix socket, drawn in a GTK widget.
