"""A Cinder volume driver that keeps each volume as a sparse file (test support of the
real-services lane; runs inside cinder-volume, in the services' virtualenv).

Cinder's own drivers all need a block device, a mount, an array or root (LVM, NFS and the
other RemoteFS drivers), and the packaged fake driver moves no bytes. This one stores volume
``N`` as ``$state_path/volumes/volume-N``, a file of the volume's size, so that the image <->
volume copies move real bytes through Cinder's own Glance client:

- a volume made from an image: ``clone_image`` (which Cinder tries first, as it does for Ceph)
  downloads the image through Cinder's image service into the file, then grows the file to the
  volume's size, the way ``qemu-img convert`` of a raw image onto a device leaves it. Only raw
  images are taken: converting other formats needs qemu-img, which this driver does not use;
  any other format is refused with ``ImageUnacceptable`` (the volume goes to ``error``);
- ``os-volume_upload_image``: the file is uploaded as it is, for raw images only;
- snapshots and clones are file copies; extend grows the file.

The scheduler gets the free space of the folder's file system, thin provisioned.
"""

import contextlib
import os
import shutil

from cinder import exception
from cinder.common import constants
from cinder.volume import driver
from oslo_config import cfg
from oslo_log import log as logging

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GiB = 1 << 30


class FileVolumeDriver(driver.VolumeDriver):
    VERSION = "1.0.0"
    CI_WIKI_NAME = "migrator-tests"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._directory = os.path.join(CONF.state_path, "volumes")

    # -- set-up and stats ---------------------------------------------------------------------
    def do_setup(self, context):
        os.makedirs(self._directory, exist_ok=True)

    def check_for_setup_error(self):
        if not os.access(self._directory, os.W_OK):
            raise exception.VolumeBackendAPIException(
                data=f"{self._directory} is not a writable folder")

    def _update_volume_stats(self):
        fs = os.statvfs(self._directory)
        self._stats = {
            "volume_backend_name": self.configuration.safe_get("volume_backend_name") or "file",
            "vendor_name": "migrator tests",
            "driver_version": self.VERSION,
            "storage_protocol": constants.FILE,
            "total_capacity_gb": round(fs.f_blocks * fs.f_frsize / GiB, 2),
            "free_capacity_gb": round(fs.f_bavail * fs.f_frsize / GiB, 2),
            "reserved_percentage": 0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": 20.0,
            "multiattach": False,
        }

    # -- files --------------------------------------------------------------------------------
    def local_path(self, volume):
        return os.path.join(self._directory, volume["name"])

    def _snapshot_path(self, snapshot):
        return os.path.join(self._directory, snapshot["name"])

    def create_volume(self, volume):
        with open(self.local_path(volume), "wb") as f:
            f.truncate(volume["size"] * GiB)
        return {}

    def delete_volume(self, volume):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.local_path(volume))

    def extend_volume(self, volume, new_size):
        os.truncate(self.local_path(volume), new_size * GiB)

    def create_snapshot(self, snapshot):
        shutil.copyfile(self.local_path(snapshot.volume), self._snapshot_path(snapshot))

    def delete_snapshot(self, snapshot):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._snapshot_path(snapshot))

    def create_volume_from_snapshot(self, volume, snapshot):
        path = self.local_path(volume)
        shutil.copyfile(self._snapshot_path(snapshot), path)
        os.truncate(path, volume["size"] * GiB)
        return {}

    def create_cloned_volume(self, volume, src_vref):
        path = self.local_path(volume)
        shutil.copyfile(self.local_path(src_vref), path)
        os.truncate(path, volume["size"] * GiB)
        return {}

    # -- images -------------------------------------------------------------------------------
    def clone_image(self, context, volume, image_location, image_meta, image_service):
        self._copy_image(context, volume, image_meta, image_service)
        return {"provider_location": None}, True

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        self._copy_image(context, volume, image_service.show(context, image_id),
                         image_service)

    def _copy_image(self, context, volume, image_meta, image_service):
        image_id = image_meta["id"]
        if image_meta.get("disk_format") != "raw":
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"disk_format {image_meta.get('disk_format')}: this test driver "
                       "copies raw images only (no qemu-img)")
        path = self.local_path(volume)
        with open(path, "wb") as f:
            image_service.download(context, image_id, f)
            written = f.tell()
        if written > volume["size"] * GiB:
            os.unlink(path)
            raise exception.ImageTooBig(
                image_id=image_id,
                reason=f"{written} bytes do not fit a {volume['size']} GiB volume")
        os.truncate(path, volume["size"] * GiB)
        LOG.info("image %s: %d bytes copied into %s", image_id, written, path)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        if image_meta.get("disk_format") != "raw":
            raise exception.ImageUnacceptable(
                image_id=image_meta["id"],
                reason=f"disk_format {image_meta.get('disk_format')}: this test driver "
                       "uploads raw images only (no qemu-img)")
        with open(self.local_path(volume), "rb") as f:
            image_service.update(context, image_meta["id"], {}, f)

    # -- exports: the file is the device --------------------------------------------------------
    def ensure_export(self, context, volume):
        pass

    def create_export(self, context, volume, connector):
        pass

    def remove_export(self, context, volume):
        pass

    def initialize_connection(self, volume, connector, **kwargs):
        return {"driver_volume_type": "local",
                "data": {"device_path": self.local_path(volume)}}

    def terminate_connection(self, volume, connector, **kwargs):
        pass
