use strongbox_archive::Compression;
use strongbox_manifest::{ObjectRef, ObjectRole, SnapshotId};
use strongbox_storage::{layout, ObjectWriter, PutMode, Repository};

use crate::Error;

/// Where a [`Source`](crate::Source) writes the objects of the snapshot it takes: every
/// object goes through the repository's object pipeline and is named `<id>.<extension>`
/// in the set's data. The sink remembers what was stored, for the record; objects of a
/// backup that fails before its commit are deleted when the sink is dropped.
pub struct ObjectSink<'a> {
    repo: &'a Repository,
    set: String,
    id: SnapshotId,
    objects: Vec<ObjectRef>,
    committed: bool,
}

impl<'a> ObjectSink<'a> {
    pub(crate) fn new(repo: &'a Repository, set: &str, id: SnapshotId) -> Self {
        ObjectSink {
            repo,
            set: set.to_string(),
            id,
            objects: Vec::new(),
            committed: false,
        }
    }

    /// The set the snapshot is taken into.
    pub fn set(&self) -> &str {
        &self.set
    }

    /// The id of the snapshot being taken.
    pub fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn key(&self, extension: &str) -> String {
        layout::data_key(&self.set, &self.id, extension)
    }

    /// Start a streamed object (an archive, a dump, a whole listing), compressed with
    /// `compression`.
    pub fn create(
        &mut self,
        extension: &str,
        compression: Compression,
    ) -> Result<ObjectWriter, Error> {
        Ok(self.repo.create(&self.key(extension), compression)?)
    }

    /// Start a small object (a delta listing), stored with one create-only PUT when finished.
    pub fn create_small(
        &mut self,
        extension: &str,
        compression: Compression,
    ) -> Result<ObjectWriter, Error> {
        Ok(self
            .repo
            .create_small(&self.key(extension), compression, PutMode::Create)?)
    }

    /// Store a finished object as one of the snapshot's.
    pub fn finish(&mut self, writer: ObjectWriter, role: ObjectRole) -> Result<&ObjectRef, Error> {
        let written = writer.finish()?;
        self.objects.push(ObjectRef {
            key: written.key,
            size: written.size,
            sha256: written.sha256,
            role,
        });
        Ok(self.objects.last().expect("just pushed"))
    }

    /// The objects stored so far.
    pub fn objects(&self) -> &[ObjectRef] {
        &self.objects
    }

    /// The record naming the objects is written: keep them.
    pub(crate) fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for ObjectSink<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for object in &self.objects {
            if let Err(e) = self.repo.delete(&object.key) {
                tracing::warn!(key = %object.key, error = &e as &dyn std::error::Error, "could not remove an object of a failed backup; prune will");
            }
        }
    }
}
