"""Generated-code packages for the dermis.* protobuf packages."""
