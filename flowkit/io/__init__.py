"""Files in and out: frame sources (:mod:`.sources`), the video packet index and exact seeks
(:mod:`.video_index`), annotation files (:mod:`.annotations`), the Zarr feature store, its only
owner (:mod:`.store`), and all-or-nothing writes (:mod:`.atomic`)."""
