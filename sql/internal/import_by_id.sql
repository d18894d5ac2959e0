-- One import (prmf import) by its content key: what an import of the same file into the same place found.
SELECT * FROM imports WHERE import_id = $import_id;
